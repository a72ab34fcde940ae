"""`zyra-remote`: Zyra's command line, run on a zyra-orchestrator service."""
