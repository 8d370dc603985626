"""incident-bridge: monitoring and cloud-cost alerts in, PagerDuty incidents that page the right people out."""

__version__ = "0.1.0"
