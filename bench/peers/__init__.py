"""`python -m bench.peers`: our gateway beside Portkey's and LiteLLM's, measured in one run with
one load generator, each pinned to the same core (issue 17's table)."""
