"""cpagent: a charge point agent that drives EV charger hardware and speaks OCPP."""

__version__ = "0.1.0"
