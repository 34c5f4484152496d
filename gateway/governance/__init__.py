"""Policies at run time, beside the pure policy engine (gateway/policy/): which policies are
in force on this worker and how changes reach it (registry.py), and the alerts a violation
sends (alerts.py)."""

from gateway.governance.registry import Governance, fired, violation_record

__all__ = ["Governance", "fired", "violation_record"]
