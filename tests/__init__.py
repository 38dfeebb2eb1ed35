"""Tests for the HA Ingestor integration."""
