"""The embedded music world: an offline, seeded dataset in which every modality carries signal.

One module per part of the generative story (``build`` tells it in full):

```
build.py      WorldConfig, build_world (scenes, artists, tracks, tags), synth_world (-> dataset)
genres.py     style tables: genres, moods, lyric themes (plain data)
text.py       titles, names and lyrics
playlists.py  playlists of listeners of hidden scenes
audio.py      preview clips rendered from genre, tempo, key and instruments
timbre.py     the instruments and the voice those clips are made of
```
"""

from talkplay.data.world.build import World, WorldConfig, build_world, synth_world

__all__ = ["World", "WorldConfig", "build_world", "synth_world"]
