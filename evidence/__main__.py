from evidence.cli import app

app(prog_name="evidence")
