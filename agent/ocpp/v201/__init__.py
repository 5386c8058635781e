"""OCPP 2.0.1 adapter: device model, reports and (later) the wire adapter."""
