"""The Hydra configs. A regular package because the `lit-prefopt` console script imports the entry
as `lit_prefopt.__main__`, and Hydra then loads `config_path` as the package `lit_prefopt.conf`."""
