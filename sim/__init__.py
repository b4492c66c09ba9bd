"""The production path on this machine: a prod-shaped stack through the real Proxmox provider
against fakepve, whose VMs boot as lab nodes (docs/lab.md, "The sim")."""
