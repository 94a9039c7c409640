"""``torchddsp app``: a local web studio over the library (transfer, play, train, voice).

A small Starlette server (:mod:`.server`) and one plain HTML/CSS/JS page
(``static/``) that loads nothing from the internet. Long work runs in the
background (:mod:`.jobs`: a thread pool; :mod:`.training`: ``torchddsp``
subprocesses), each browser session keeps its uploads and results in a folder
of its own (:mod:`.sessions`), and everything the page sends is checked before
it reaches the library (:mod:`.uploads`, :mod:`.catalog`).
"""
