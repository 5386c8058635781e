"""The local HTTP + JSON control API of the agent (contract: docs/openapi.yaml).

`ApiServer(runner, config.api)` serves status, the OCPP message log and, on simulated
hardware, EV, token, fault, network and power actions. Import it only when the config
enables the API: aiohttp is loaded with it.
"""

from agent.api.server import ApiServer

__all__ = ["ApiServer"]
