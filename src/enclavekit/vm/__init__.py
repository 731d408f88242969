"""Confidential VMs: the size catalogue, platform identity and the device service."""
