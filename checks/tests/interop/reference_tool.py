"""Drives the reference OpenSSF model-signing tool (PyPI `model-signing`) for Rampart's interoperability tests.

    python reference_tool.py check
        Prints the installed model_signing version; exits 3 (with the reason) when it cannot be imported.
    python reference_tool.py sign PRIVATE_KEY BUNDLE MODEL_PATH
    python reference_tool.py verify PUBLIC_KEY BUNDLE MODEL_PATH
        Key-based signing and verification with the reference tool's default options (file serialization, sha256,
        git metadata ignored). Exit 0 on success, 1 on a verification or signing failure (the reason on stderr).

Needs: pip install model-signing==1.1.1 pyopenssl
"""

import sys


def _check() -> int:
    try:
        import importlib.metadata

        import model_signing  # noqa: F401  (the import is the check)
        import OpenSSL  # noqa: F401

        print(f"model_signing {importlib.metadata.version('model-signing')}")
        return 0
    except Exception as err:  # any import failure means "not usable"
        print(f"the reference tool is not usable: {err!r}", file=sys.stderr)
        return 3


def _sign(private_key: str, bundle: str, model_path: str) -> int:
    import model_signing

    try:
        model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[bundle], ignore_git_paths=True)
        ).sign(model_path, bundle)
    except Exception as err:
        print(f"signing failed: {err}", file=sys.stderr)
        return 1
    print("signed")
    return 0


def _verify(public_key: str, bundle: str, model_path: str) -> int:
    import model_signing

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[bundle], ignore_git_paths=True)
        ).verify(model_path, bundle)
    except Exception as err:
        print(f"verification failed: {err}", file=sys.stderr)
        return 1
    print("verified")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 1:
        return _check()
    if argv[:1] == ["sign"] and len(argv) == 4:
        return _sign(*argv[1:])
    if argv[:1] == ["verify"] and len(argv) == 4:
        return _verify(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
