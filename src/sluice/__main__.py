from sluice.cli import app

app(prog_name="sluice")
