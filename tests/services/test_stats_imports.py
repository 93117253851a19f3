"""`stats` pays only for what it uses: no Alembic, no crypto, no boto3 unless the queues are asked."""

from __future__ import annotations

import subprocess
import sys


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_stats_action_and_the_schema_status_import_no_alembic_boto3_or_crypto() -> None:
    loaded = _imported_after(
        "import loginetl.actions.stats, loginetl.services.migrations as m; m.heads()"
    )
    assert "loginetl.actions.stats" in loaded  # the probe ran
    assert "alembic" not in loaded  # ~0.3 s: ScriptDirectory executes every migration
    assert "boto3" not in loaded  # only queue_stats needs it
    assert "botocore" not in loaded
    assert "cryptography" not in loaded  # nothing stats reads is sealed or masked
