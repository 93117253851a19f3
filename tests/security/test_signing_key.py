"""An unmasker without the audit-signing key gets nothing, and the refusal is audited."""

from __future__ import annotations

import shutil
from pathlib import Path

from loginetl.services import keys
from tests.security.conftest import REASON, World, attack, run, sql


def test_unmask_without_the_signing_key_is_refused_and_audited(
    world: World, tmp_path: Path
) -> None:
    unsigned = tmp_path / "no-signing-key"
    shutil.copytree(world.keys_dir, unsigned)
    (unsigned / keys.AUDIT_PRIVATE_FILE).unlink()
    token = world.ip_tokens[0]
    env = {**world.env(world.unmasker), "LOGINETL_KEYS_DIR": str(unsigned)}
    with attack("unmasker: loginetl unmask with the signing key removed (no signed head)"):
        result = run(env, "unmask", token, "--reason", REASON)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert "keys init" in result.stderr
    assert sql(world.owner, "SELECT outcome FROM unmask_audit") == [("refused_no_signing_key",)]
    assert sql(world.owner, "SELECT count(*) FROM audit_heads") == [(0,)]
