

def test_only_the_bundle_key_rotates_from_the_command_line() -> None:
    """The ledger key is the log's identity: the command refuses and says why, touching nothing."""
    result = CliRunner().invoke(app, ["admin", "rotate-key", "ledger"])
    assert result.exit_code != 0
    assert "cannot rotate 'ledger'" in result.output and "log's identity" in result.output
