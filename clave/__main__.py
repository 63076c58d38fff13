from clave.cli import entry

entry()
