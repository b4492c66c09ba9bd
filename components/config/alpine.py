"""Alpine Linux releases: the default cloud image, the apk repositories of an image's release,
and each release's end of support, so `pulumi preview` can say when a stack runs past it.

The default is Alpine 3.24.1's generic BIOS cloud-init image (from 3.24 on, Alpine names these
`generic_`; until 3.23 they were `nocloud_`). No stored copy of Alpine's own `.sha256`/`.sha512`
sidecar for it could be read here; its SHA-256 is the one several independent projects pin for
this exact file (lf-edge/eve's tests, e.g. tests/apps/vnc_test.go, "Alpine 3.24.1 cloud images,
pinned by release version"; 183697408 bytes). PVE checks the download against it, so a wrong
value fails the download, never boots another image. docs/proxmox.md says how to check it.
"""

from __future__ import annotations

import datetime as dt
import re

DEFAULT_RELEASE = "3.24"
IMAGE_URL = ("https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/cloud/"
             "generic_alpine-3.24.1-x86_64-bios-cloudinit-r0.qcow2")
IMAGE_SHA256 = "6e2e6fe0572b6632527f268d3659e8fccebda4e1ee470fafe2c4d7b85b6a4df6"

# End of support of each stable branch, from alpinelinux.org/releases as endoflife.date records
# it (endoflife-date/endoflife.date, products/alpine-linux.md).
END_OF_SUPPORT = {
    "3.19": dt.date(2025, 11, 1),
    "3.20": dt.date(2026, 4, 1),
    "3.21": dt.date(2026, 11, 1),
    "3.22": dt.date(2027, 5, 1),
    "3.23": dt.date(2027, 11, 1),
    "3.24": dt.date(2028, 6, 1),
}

_RELEASE_IN_URL = re.compile(r"/alpine/v(\d+\.\d+)/")


def release_of(image_url: str) -> str | None:
    """The Alpine branch an image URL belongs to (`.../alpine/v3.24/...`), or None."""
    found = _RELEASE_IN_URL.search(image_url)
    return found.group(1) if found else None


def repositories(image_url: str) -> tuple[str, str]:
    """The apk repositories the install step pins: the image's own branch (the default's when
    the URL names none), so packages match the base system."""
    release = release_of(image_url) or DEFAULT_RELEASE
    return (f"https://dl-cdn.alpinelinux.org/alpine/v{release}/main",
            f"https://dl-cdn.alpinelinux.org/alpine/v{release}/community")


def support_warning(image_url: str, today: dt.date | None = None) -> str | None:
    """A warning when the image's release is past its end of support (None otherwise, and for
    releases this table does not know)."""
    release = release_of(image_url)
    ended = END_OF_SUPPORT.get(release or "")
    today = today or dt.date.today()
    if ended is None or today < ended:
        return None
    supported = sorted((r for r, end in END_OF_SUPPORT.items() if end > today),
                       key=lambda r: tuple(map(int, r.split("."))))
    return (f"haproxy-ha:vm.imageUrl: Alpine {release} reached its end of support on {ended.isoformat()}: no more "
            f"security fixes. Move to a supported release ({', '.join(supported) or 'see alpinelinux.org/releases'}); "
            "the change rolls through the nodes one at a time")
