import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.model.sha512crypt import SALT_ALPHABET, derived_salt, sha512_crypt


def openssl_crypt(password: str, salt: str) -> str:
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def test_known_vector_from_the_spec():
    # Test vector from Drepper's SHA-crypt specification.
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
        "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    )


def test_rounds_prefix_from_the_spec():
    assert sha512_crypt("Hello world!", "saltstringsaltst", rounds=10000) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sb"
        "HbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
@settings(max_examples=30, deadline=None)
@given(
    password=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=80),
    salt=st.text(st.sampled_from(SALT_ALPHABET), min_size=1, max_size=16),
)
def test_matches_openssl(password, salt):
    assert sha512_crypt(password, salt) == openssl_crypt(password, salt)


def test_derived_salt_is_stable_and_per_stack():
    assert derived_salt("prod", "stats", "admin") == derived_salt("prod", "stats", "admin")
    assert derived_salt("prod", "stats", "admin") != derived_salt("lab", "stats", "admin")
    assert len(derived_salt("x")) == 16 and set(derived_salt("x")) <= set(SALT_ALPHABET)
