"""What tests and benches use to poke a running lab (probes, client load, TLS clients); production never runs it."""
