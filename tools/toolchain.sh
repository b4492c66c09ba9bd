#!/bin/sh
# `make toolchain`: a Pulumi CLI and the plugins a lab stack needs.
#
# A `pulumi` 3.272 or newer already on PATH (Pulumi's own installer) is used as it is. Otherwise
# the CLI and the Python language host are built with the go command from the Go module proxy
# (one wrapper module per binary under tools/, pinned by its go.mod and go.sum) into
# $HAPROXY_HA_TOOLCHAIN/bin (default /var/cache/haproxy-ha/toolchain/bin), outside the tree.
# A binary is rebuilt only when its pin changes; the go caches make a rebuild quick.
set -eu
tools=$(cd "$(dirname "$0")" && pwd)
dest=${HAPROXY_HA_TOOLCHAIN:-/var/cache/haproxy-ha/toolchain}
bin=$dest/bin
min=3.272.0

# The CLI's version as 3.x.y, or nothing.
version_of() { "$1" version 2>/dev/null | sed -n 's/^v\{0,1\}\([0-9][0-9.]*\).*/\1/p' | head -n1; }
at_least() { [ "$(printf '%s\n%s\n' "$min" "$1" | sort -V | head -n1)" = "$min" ]; }

if [ ! -x "$bin/pulumi" ]; then
	ambient=$(command -v pulumi 2>/dev/null || true)
	if [ -n "$ambient" ] && v=$(version_of "$ambient") && [ -n "$v" ] && at_least "$v"; then
		echo "toolchain: using $ambient ($v) and its plugins"
		exit 0
	fi
fi

command -v go >/dev/null || { echo "toolchain: no pulumi >= $min on PATH and no go command to build one" >&2; exit 1; }
mkdir -p "$bin"

# build NAME PACKAGE VERSION_VAR VERSION: one binary from its wrapper module tools/NAME.
build() {
	name=$1 package=$2 var=$3 version=$4 out=$5
	pin=$(cat "$tools/$name/go.mod" "$tools/$name/go.sum" "$0" | sha256sum | cut -d' ' -f1)
	if [ -x "$bin/$out" ] && [ "$(cat "$bin/.pin-$out" 2>/dev/null)" = "$pin" ]; then
		return 0
	fi
	echo "toolchain: building $out $version (go build in tools/$name)"
	start=$(date +%s)
	(cd "$tools/$name" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -tags osusergo,grpcnotrace \
		-ldflags "-s -w -X $var=$version" -o "$bin/$out.tmp" "$package")
	mv -f "$bin/$out.tmp" "$bin/$out"
	echo "$pin" > "$bin/.pin-$out"
	echo "toolchain: $out built in $(( $(date +%s) - start )) s"
}

build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
	github.com/pulumi/pulumi/sdk/v3/go/common/version.Version v3.274.1 pulumi
build language-python github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
	github.com/pulumi/pulumi/sdk/v3/go/common/version.Version v3.79.0 pulumi-language-python

# Beside the binaries, as in Pulumi's tarball: the language host's executor (it comes with the
# CLI's sdk module) and our launcher of Python dynamic providers.
sdk=$(cd "$tools/pulumi" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0644 "$sdk/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
install -m 0755 "$tools/bin/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"
echo "toolchain: $bin ($("$bin/pulumi" version))"
