"""Who is calling and what they may do: bearer tokens to principals, the role rules, which
conversations a caller sees, repositories, quotas, resume tokens and the audit trail."""
