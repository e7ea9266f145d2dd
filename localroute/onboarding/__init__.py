"""onboarding concern of localroute: `localroute init` proposes and writes a models.yaml."""
