"""Synthetic stand-ins for the game-scraping and NoScope datasets.

They let training, the data pipeline and the tests run where the real data (game_data.tar,
NoScope's videos and label CSVs) is absent. They are always used under the name
`synthetic-<task>`, never in place of real data: numbers measured on them say nothing about
the paper's accuracies. Both generators are deterministic by seed.

- `make_game_dataset`: an ImageFolder tree whose classes are the task's class names rendered
  as text with TrueType fonts over textured backgrounds; class `other` is clutter.
- `make_noscope_video`: a short mp4 of a static scene that the task's positive object crosses
  now and then, plus a label CSV in NoScope's format (with a distractor object to filter out).

`game.py` and `noscope.py` hold the two generators.
"""
from datasets.synthetic.game import OTHER, font_files, make_game_dataset, render_game_image
from datasets.synthetic.noscope import CSV_HEADER, make_noscope_video

__all__ = ["OTHER", "CSV_HEADER", "font_files", "make_game_dataset", "make_noscope_video", "render_game_image"]
