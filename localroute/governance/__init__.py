"""governance concern of localroute: modes, homeostasis sensors, transitions and effectors."""
