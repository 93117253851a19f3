"""One plain function (or runner) per subcommand; they return dataclasses and never print."""
