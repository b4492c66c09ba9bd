# Every target sets up what it needs itself; `make setup` is idempotent.
SHELL := /bin/bash
PY := .venv/bin/python
STACK ?= prod
OUT ?= /tmp/haproxy-ha-render
# Debian packages the tests and the lab use (the real daemons, sshd, OpenRC, script checkers).
APT_PACKAGES := haproxy keepalived nftables openssh-server openrc shellcheck busybox iproute2 openssl curl procps rsyslog logrotate qemu-guest-agent debootstrap ca-certificates

.PHONY: setup system-packages venv toolchain scanners env debian13-root test lint render lab lab-down lab-preview lab-ssh sim sim-down sim-preview bench

setup: system-packages venv toolchain scanners

# sslyze (the lab's TLS profile checks) in a virtualenv of its own, outside the repo: it pins a
# cryptography that is not ours. tools/sslyze/requirements.txt pins every package.
SSLYZE_VENV ?= /var/cache/haproxy-ha/sslyze
scanners: $(SSLYZE_VENV)/.installed

$(SSLYZE_VENV)/.installed: tools/sslyze/requirements.txt
	python3 -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r tools/sslyze/requirements.txt
	cp tools/sslyze/requirements.txt $@

# The Pulumi CLI and plugins: the PATH's pulumi >= 3.272 if there is one, else built with the go
# command from the Go module proxy into $(HAPROXY_HA_TOOLCHAIN); the command and proxmoxve plugins
# built from the upstream snapshots in $(HAPROXY_HA_UPSTREAM) (default ../shared/upstream), unless
# the PATH's pulumi has or can install them (tools/README.md). Seconds when built.
toolchain:
	@tools/toolchain.sh

# eval "$$(make -s env)": our pulumi on PATH and the lab stack's backend and passphrase.
env:
	@$(PY) -m lab env --stack $(or $(LAB_STACK),lab)

system-packages:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(APT_PACKAGES) 2>/dev/null | awk '$$NF == "installed" { ok[$$1] = 1 } END { split("$(APT_PACKAGES)", want, " "); for (i in want) if (!(want[i] in ok)) printf "%s ", want[i] }'); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make setup: need root to install $$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: .venv/.installed

.venv/.installed: requirements.txt requirements-dev.txt constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

# Debian 13's HAProxy 3.0 / keepalived 2.3 (production's series) in a cached chroot outside the repo
# ($HAPROXY_HA_DEBIAN13_ROOT, default /var/cache/haproxy-ha/debian13-root); about 30 s once. Skipped without root.
debian13-root: setup
	$(PY) -m components.files.daemons13

# Two pytest runs side by side: the sim's tests (their own namespaces, stacks and PVE daemon)
# and all the others; the sim's report follows the others'. Fails if either fails.
test: setup debian13-root
	@sim_log=$$(mktemp); \
	$(PY) -m pytest -q tests/test_sim.py > "$$sim_log" 2>&1 & sim=$$!; \
	$(PY) -m pytest -q --ignore=tests/test_sim.py; main=$$?; \
	wait $$sim; sim_rc=$$?; \
	echo "--- tests/test_sim.py (run beside the others)"; cat "$$sim_log"; rm -f "$$sim_log"; \
	[ $$main -eq 0 ] && [ $$sim_rc -eq 0 ]

lint: venv
	$(PY) -m ruff check .

render: venv
	$(PY) -m components render $(STACK) --out $(OUT)

# The lab stack on this machine (root): `pulumi up` of namespaces, real haproxy/keepalived.
lab: setup
	$(PY) -m lab up --stack lab

lab-preview: setup
	$(PY) -m lab preview --stack lab

lab-down: setup
	$(PY) -m lab down --stack lab

# A root shell on a lab node, over SSH as on a VM: make lab-ssh NODE=k3s-lb-01
lab-ssh: venv
	@$(PY) -m lab ssh --stack lab $(if $(NODE),--node $(NODE))

# The production path on this machine: a prod-shaped stack through the real Proxmox provider
# against a fake PVE (fakepve) whose VMs boot as lab nodes. SIM_MODE=standalone: one API per host.
sim: setup
	$(PY) -m sim up --$(or $(SIM_MODE),cluster)

sim-preview: setup
	$(PY) -m sim preview --$(or $(SIM_MODE),cluster)

# Both modes' stacks, PVEs and namespaces.
sim-down: setup
	$(PY) -m sim down

# Measured figures (each bench brings up and tears down its own lab cluster).
bench: setup
	$(PY) bench/eval_time.py
	$(PY) bench/lab_bench.py
	$(PY) bench/make_lab_bench.py
	$(PY) bench/aa_bench.py
	$(PY) bench/operator_bench.py
	$(PY) bench/failover_ms_bench.py
	$(PY) bench/heal_bench.py
	$(PY) bench/attack_bench.py
	$(PY) bench/sim_bench.py
	$(PY) bench/toolchain_bench.py
