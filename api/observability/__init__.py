"""What operators watch: metrics, structured logs and traces."""
