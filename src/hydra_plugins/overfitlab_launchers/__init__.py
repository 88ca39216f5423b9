"""overfitlab's Hydra launcher plugin (Hydra finds plugins only in the ``hydra_plugins`` package)."""
