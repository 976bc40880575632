"""The study's extras around the library: several runs side by side
(:mod:`.parallel`), the figures (:mod:`.figures`) and REPORT.md
(:mod:`.report`). ``run_all.py`` drives them; the library never imports them."""
