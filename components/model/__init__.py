"""The validated cluster and every value derived from it (priorities, VRRP instances, hashes)."""
