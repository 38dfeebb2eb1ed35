"""The benchmark program: HA Ingestor side by side with HA's built-in influxdb."""
