#!/bin/sh
# `make toolchain`: a Pulumi CLI and the plugins a lab stack needs (tools/README.md).
#
# A `pulumi` 3.272 or newer already on PATH (Pulumi's own installer) is used as it is. Otherwise
# the CLI and the Python language host are built with the go command from the Go module proxy
# (one wrapper module per binary under tools/, pinned by its go.mod and go.sum) into
# $HAPROXY_HA_TOOLCHAIN/bin (default /var/cache/haproxy-ha/toolchain/bin), outside the tree.
#
# The resource plugins pulumi-resource-command and pulumi-resource-proxmoxve are built from the
# upstream snapshots in $HAPROXY_HA_UPSTREAM (default ../shared/upstream beside the repository),
# each tarball checked against tools/upstream.sha256 first, every other module from the proxy.
# With the PATH's pulumi, that pulumi's own plugins are used when it has or can install them.
# A binary is rebuilt only when its pin changes; the go caches make a rebuild quick.
set -eu
tools=$(cd "$(dirname "$0")" && pwd)
dest=${HAPROXY_HA_TOOLCHAIN:-/var/cache/haproxy-ha/toolchain}
# bin: what goes on PATH (the CLI, and each plugin's launcher); libexec: the plugins' binaries;
# home: the PULUMI_HOME lab/engine.py sets, whose plugin cache holds the resource plugins.
bin=$dest/bin libexec=$dest/libexec home=$dest/home
min=3.272.0
upstream=${HAPROXY_HA_UPSTREAM:-}
if [ -z "$upstream" ] && [ -d "$tools/../../shared/upstream" ]; then
	upstream=$(cd "$tools/../../shared/upstream" && pwd)
fi

die() { echo "toolchain: $*" >&2; exit 1; }
need_go() { command -v go >/dev/null || die "no go command to build $1 (tools/README.md)"; }

# The CLI's version as 3.x.y, or nothing.
version_of() { "$1" version 2>/dev/null | sed -n 's/^v\{0,1\}\([0-9][0-9.]*\).*/\1/p' | head -n1; }
at_least() { [ "$(printf '%s\n%s\n' "$min" "$1" | sort -V | head -n1)" = "$min" ]; }

# The pinned "SHA256  TARBALL" line of a snapshot.
pinned() { awk -v t="$1" '$2 == t' "$tools/upstream.sha256"; }

# verify TARBALL...: each snapshot is in $upstream with its pinned sha256.
verify() {
	if [ -z "$upstream" ] || [ ! -d "$upstream" ]; then
		die "the upstream snapshots are not found: set HAPROXY_HA_UPSTREAM to their folder (tools/README.md)"
	fi
	for t in "$@"; do
		want=$(pinned "$t" | cut -d' ' -f1)
		[ -n "$want" ] || die "$t: no sha256 in tools/upstream.sha256"
		[ -f "$upstream/$t" ] || die "$upstream/$t: not found (HAPROXY_HA_UPSTREAM)"
		got=$(sha256sum "$upstream/$t" | cut -d' ' -f1)
		[ "$got" = "$want" ] || die "$upstream/$t: sha256 $got, pinned $want (tools/upstream.sha256)"
	done
}

# build NAME PACKAGE VERSION_VAR VERSION OUT DIR: one binary from its wrapper module tools/NAME, into DIR.
# Every go build runs with -mod=readonly (go.sum pins every module), after the caller's GOFLAGS.
build() {
	name=$1 package=$2 var=$3 version=$4 out=$5 dir=$6
	pin=$(cat "$tools/$name/go.mod" "$tools/$name/go.sum" "$0" | sha256sum | cut -d' ' -f1)
	if [ -x "$dir/$out" ] && [ "$(cat "$dir/.pin-$out" 2>/dev/null)" = "$pin" ]; then
		return 0
	fi
	need_go "$out"
	echo "toolchain: building $out $version (go build in tools/$name)"
	start=$(date +%s)
	(cd "$tools/$name" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -trimpath -tags osusergo,grpcnotrace \
		-ldflags "-s -w -X $var=$version" -o "$dir/$out.tmp" "$package")
	mv -f "$dir/$out.tmp" "$dir/$out"
	echo "$pin" > "$dir/.pin-$out"
	echo "toolchain: $out built in $(( $(date +%s) - start )) s"
}

# guarded NAME DIR: DIR/NAME, a launcher that runs libexec/NAME behind plugin-guard (it ends
# the plugin once the engine is gone); written only when it changes.
guarded() {
	launcher=$(printf '#!/bin/sh\n# tools/toolchain.sh: %s behind tools/bin/plugin-guard\nexec %s %s "$@"' \
		"$1" "$libexec/plugin-guard" "$libexec/$1")
	if [ "$(cat "$2/$1" 2>/dev/null)" != "$launcher" ]; then
		printf '%s\n' "$launcher" > "$2/$1.tmp" && chmod 0755 "$2/$1.tmp" && mv -f "$2/$1.tmp" "$2/$1"
	fi
}

# plugin NAME VERSION MODULE DIR TARBALL...: pulumi-resource-NAME VERSION, built as upstream
# builds it, from the tarballs unpacked into $dest/build/NAME. DIR (in there) holds the go.mod
# the build uses: the provider's own module, or "." for our wrapper module tools/NAME, copied
# beside the unpacked trees so its relative replace paths resolve there.
plugin() {
	name=$1 version=$2 module=$3 dir=$4
	shift 4
	out=pulumi-resource-$name work=$dest/build/$name wrapper=
	[ "$dir" = . ] && wrapper=$tools/$name
	pin=$( {
		echo "$name $version $module $dir"
		for t in "$@"; do pinned "$t"; done
		if [ -n "$wrapper" ]; then (cd "$wrapper" && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2); fi
		cat "$0"
	} | sha256sum | cut -d' ' -f1)
	if [ -x "$libexec/$out" ] && [ "$(cat "$libexec/.pin-$out" 2>/dev/null)" = "$pin" ]; then
		return 0
	fi
	need_go "$out"
	verify "$@"
	src=$work/$dir
	[ "$dir" = . ] && src=$work
	echo "toolchain: building $out $version (go build in $src, from $upstream)"
	start=$(date +%s)
	rm -rf "$work"
	mkdir -p "$work" "$libexec"
	for t in "$@"; do tar -xzf "$upstream/$t" -C "$work"; done
	if [ -n "$wrapper" ]; then cp -R "$wrapper/." "$work/"; fi
	(cd "$src" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -trimpath \
		-ldflags "-s -w -X $module/pkg/version.Version=$version" -o "$libexec/$out.tmp" "$module/cmd/$out")
	mv -f "$libexec/$out.tmp" "$libexec/$out"
	echo "$pin" > "$libexec/.pin-$out"
	echo "toolchain: $out built in $(( $(date +%s) - start )) s"
}

# The two plugins, at the versions of the Python SDKs in requirements.txt.
command_version=1.2.1 proxmoxve_version=8.3.0
plugin_command() {
	plugin command "$command_version" github.com/pulumi/pulumi-command/provider \
		"pulumi-command-$command_version/provider" "pulumi-command-$command_version.tar.gz"
}
plugin_proxmoxve() {
	plugin proxmoxve "$proxmoxve_version" github.com/muhlba91/pulumi-proxmoxve/provider . \
		"pulumi-proxmoxve-$proxmoxve_version.tar.gz" terraform-provider-proxmox-0.111.1.tar.gz \
		pulumi-yaml-1.36.0.tar.gz pulumi-language-dotnet-3.107.1.tar.gz
}

if [ ! -x "$bin/pulumi" ]; then
	ambient=$(command -v pulumi 2>/dev/null || true)
	if [ -n "$ambient" ] && v=$(version_of "$ambient") && [ -n "$v" ] && at_least "$v"; then
		echo "toolchain: using $ambient ($v) and its plugins"
		# Its own plugin, when it has this exact version or can download it; else ours, built
		# here and installed into its plugin cache (the engine finds it there).
		for p in command:$command_version proxmoxve:$proxmoxve_version; do
			pname=${p%%:*} pversion=${p#*:} server=
			[ "$pname" = proxmoxve ] && server=github://api.github.com/muhlba91/pulumi-proxmoxve
			if "$ambient" plugin install --exact resource "$pname" "$pversion" ${server:+--server "$server"} \
				>/dev/null 2>&1; then
				echo "toolchain: $ambient has resource plugin $pname $pversion"
				continue
			fi
			"plugin_$pname"
			"$ambient" plugin install --exact resource "$pname" "$pversion" --file "$libexec/pulumi-resource-$pname"
		done
		exit 0
	fi
fi

need_go "the Pulumi CLI (no pulumi >= $min on PATH)"
mkdir -p "$bin" "$libexec" "$home" "$dest/launchers"
# What an earlier layout put on PATH (plugins there would be used unguarded).
rm -f "$bin/pulumi-resource-command" "$bin/pulumi-resource-proxmoxve" "$bin/pulumi-language-python-exec" \
	"$bin"/.pin-pulumi-resource-* "$bin/.pin-pulumi-language-python"

build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
	github.com/pulumi/pulumi/sdk/v3/go/common/version.Version v3.274.1 pulumi "$bin"
build language-python github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
	github.com/pulumi/pulumi/sdk/v3/go/common/version.Version v3.79.0 pulumi-language-python "$libexec"
install -m 0755 "$tools/bin/plugin-guard" "$libexec/plugin-guard"
guarded pulumi-language-python "$bin"

# Beside the language host, as in Pulumi's tarball: its executor (it comes with the CLI's sdk
# module; the host looks for it beside its own binary). On PATH: our launcher of Python dynamic
# providers, which watches the engine itself.
if [ "$(cat "$libexec/.pin-exec" 2>/dev/null)" != "$(cat "$bin/.pin-pulumi")" ]; then
	sdk=$(cd "$tools/pulumi" && go mod download github.com/pulumi/pulumi/sdk/v3 &&
		go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
	install -m 0644 "$sdk/python/cmd/pulumi-language-python-exec" "$libexec/pulumi-language-python-exec"
	cp "$bin/.pin-pulumi" "$libexec/.pin-exec"
fi
install -m 0755 "$tools/bin/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"

# The resource plugins, each behind plugin-guard, in the plugin cache of $home, where the
# engine finds them (found on PATH instead, each would be a warning on every run).
plugin_command
plugin_proxmoxve
for p in command:$command_version proxmoxve:$proxmoxve_version; do
	pname=${p%%:*} pversion=${p#*:}
	guarded "pulumi-resource-$pname" "$dest/launchers"
	if ! cmp -s "$dest/launchers/pulumi-resource-$pname" \
		"$home/plugins/resource-$pname-v$pversion/pulumi-resource-$pname"; then
		PULUMI_HOME=$home "$bin/pulumi" plugin install --exact --reinstall resource "$pname" "$pversion" \
			--file "$dest/launchers/pulumi-resource-$pname" >/dev/null
	fi
done
echo "toolchain: $bin ($("$bin/pulumi" version); command $command_version, proxmoxve $proxmoxve_version)"
