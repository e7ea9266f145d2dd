"""resources concern of localroute: the memory planner."""
