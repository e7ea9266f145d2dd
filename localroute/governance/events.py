"""Event names governance emits (structlog event field), in one place.

Kept here until `localroute/telemetry` offers an event-name module of its own; the names follow
the `<concern>.<thing>.<what happened>` pattern so they can move there unchanged.
"""

MODE_TRANSITION = "governance.mode.transition"
MODE_BLOCKED = "governance.mode.blocked"  # a wanted change with no allowed edge (yet)
MODE_OVERRIDE_SET = "governance.mode.override_set"
MODE_OVERRIDE_CLEARED = "governance.mode.override_cleared"
RULE_TRIGGERED = "governance.rule.triggered"
RULE_CLEARED = "governance.rule.cleared"
EFFECTOR_GATES = "governance.effector.gates"
EFFECTOR_ROLES = "governance.effector.roles"
EFFECTOR_REFUSAL = "governance.effector.refusal"
REQUEST_REFUSED = "governance.request.refused"
SENSOR_ERROR = "governance.sensor.error"
