"""The run stage: prepare a grid's runs, execute them (runner, executor), store their records."""
