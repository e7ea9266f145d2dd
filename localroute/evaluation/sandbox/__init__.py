"""sandbox of localroute's evaluation."""
