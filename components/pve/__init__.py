"""Talking to the Proxmox VE API: what the program checks before it declares anything."""
