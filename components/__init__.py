"""haproxy-ha: a highly available HAProxy + keepalived tier, declared with Pulumi."""
