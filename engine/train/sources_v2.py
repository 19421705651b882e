"""Data v2: which files of which Debian packages make the packed texture set, and how the pack is built.

Every source is ``Src(class, package, path, licence, group, crop, scale)``: ``path`` is relative to the
package's root (``ROOT/<package>/``, i.e. ``dpkg-deb -x`` output; ``ufoai-textures`` and
``extremetuxracer-data`` may instead be installed at ``/``); ``a.pk3!member`` reads ``member`` from the zip
``a.pk3``. ``group`` names one photograph when several files are variants of it (crops, recolours): a group is
never split between train and held-out. ``crop`` (x0, y0, x1, y1) keeps only a texture region; ``scale``
resizes (INTER_AREA) before the side cap. Licences are read from each package's ``usr/share/doc/*/copyright``
(see ``engine/train/DATA_CARD.md``).
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import zipfile
from typing import NamedTuple

import numpy as np

MAX_SIDE = 1024  # larger sources are resized (INTER_AREA) so their long side is this
MIN_SIDE = 256  # smaller sources are not used
HELD_OUT_TARGET = (0.15, 0.30)  # per class: held-out share of pixels, at least / at most (whole groups)


class Src(NamedTuple):
    cls: str
    pkg: str
    path: str
    licence: str
    group: str | None = None
    crop: tuple | None = None
    scale: float | None = None


UFO_PREFIX = "usr/share/games/ufoai/base/0textures.pk3!textures/"
ETR = "usr/share/games/etr/terrains/"
ETR_LIC = "GPL-2+"


def _ufo(cls, rel, lic="GPL-2", **kw):
    return Src(cls, "ufoai-textures", UFO_PREFIX + rel, lic, **kw)


def _etr(cls, name, **kw):
    return Src(cls, "extremetuxracer-data", ETR + name, ETR_LIC, **kw)


# v1 sources (ufoai-textures, extremetuxracer-data), licences as in engine/train/data.py SOURCES
V1 = [
    *[_ufo("grass", "tex_nature/" + n) for n in ("grass001.jpg", "grass003.jpg", "grass004.jpg", "grass_lush.png")],
    *[_ufo("grass", f"tex_nature/grass_{k}_green_{v}.jpg", group=f"ufoai:grass_{k}_green")
      for k in ("mowed", "tall") for v in "abc"],
    *[_etr("grass", f"grass0{i}.png") for i in (1, 2, 3)],
    _etr("gravel", "pebbles01.png"), _etr("gravel", "pebbles04.png"),
    _ufo("gravel", "tex_nature/railway.png", "public-domain"),
    _ufo("gravel", "tex_mattn/concrete002.jpg", "GPL-2+"),
    _ufo("gravel", "tex_ctp1/concrete_g_11.jpg"),
    *[_ufo("rock", f"tex_nature/{n}.png") for n in ("rock008", "rock009", "rock010", "rock011", "rock014",
                                                    "rock015", "rock016", "pjrock1", "pjrock17", "pjrock21")],
    *[_ufo("sand", f"tex_nature/desert00{i}.png") for i in (6, 7, 8)],
    _ufo("sand", "tex_nature/desert009.png", "public-domain"), _ufo("sand", "tex_nature/sand.jpg"),
    _etr("sand", "sand01.png"),
    _ufo("soil", "tex_nature/dirt.png"), _ufo("soil", "tex_nature/dirt001.png", "GPL-2+"),
    _ufo("soil", "tex_nature/dirt002.png", "public-domain"), _ufo("soil", "tex_nature/dirt003.png", "public-domain"),
    _ufo("soil", "tex_nature/drymud.jpg"), _ufo("soil", "tex_nature/soil001.jpg"),
    _ufo("soil", "tex_nature/soil002.jpg"), _etr("soil", "dirt01.png"), _etr("soil", "mud01.png"),
    _ufo("wood", "tex_material/wood002.png"), _ufo("wood", "tex_material/wood003.png", "public-domain"),
    *[_ufo("wood", f"tex_material/wood0{i:02d}.png") for i in range(8, 17)],
    _ufo("bark", "tex_nature/tree002.png"), _ufo("bark", "tex_nature/tree_bark_001.jpg"),
    _ufo("bark", "tex_nature/tree_bark_002.jpg"),
    *[_ufo("brick", f"tex_ctp1/bricks_{n}.jpg") for n in ("r_2", "r_3", "r_4", "r_5", "r_6", "t_2")],
    _ufo("brick", "tex_buildings/wall_brick01.png", "CC-BY-SA-3.0"),
    *[_ufo("brick", "tex_mattn/" + n, "GPL-2+") for n in ("wall_bricks001.jpg", "wall_bricks002.jpg",
                                                          "wall_bricks005.jpg", "wall_bricks006.png",
                                                          "brick03a.jpg")],
    _ufo("brick", "tex_buildings/streetbricks14.jpg"),
    _ufo("snow", "tex_nature/snow001.png"), _ufo("snow", "tex_nature/snow002.png"),
    *[_etr("snow", n) for n in ("snow.png", "snow01.png", "snow02.png", "snow03.png")],
    _ufo("rusty_metal", "tex_material/metall001.png", "GPL-2+"),
    _ufo("rusty_metal", "tex_material/metall003.png", "GPL-2+"),
    *[_ufo("rusty_metal", f"tex_material/metall0{i}.png") for i in (12, 13, 18, 19, 20, 23)],
    *[_ufo("concrete", f"tex_buildings/concrete0{i:02d}.png") for i in (3, 4, 5, 7, 14, 17)],
    _ufo("concrete", "tex_buildings/concrete024.png", "CC-BY-SA-3.0"),
    _ufo("concrete", "tex_ctp1/concrete_g_9.jpg"),
]


def _pkg_src(pkg, prefix):
    def make(cls, rel, lic=None, **kw):
        return Src(cls, pkg, prefix + rel, lic, **kw)
    return make


# Data v2 additions, chosen by eye from contact sheets of every candidate image (keywords in the file names first,
# then every terrain texture of 0ad); the licence (None here) is read from the package's copyright file at build
# time (nexuiz-data: GPL-2+ for all data). DDS files (0ad, flightgear) are DXT-compressed: they are halved
# (INTER_AREA) to hide the 4x4 compression blocks.
AD = _pkg_src("0ad-data", "usr/share/games/0ad/mods/public/public.zip!art/textures/terrain/types/")
STK = _pkg_src("supertuxkart-data", "usr/share/games/supertuxkart/data/")
RE = _pkg_src("redeclipse-data", "usr/share/games/redeclipse/data/")
MG = _pkg_src("megaglest-data", "usr/share/games/megaglest/")
FG = _pkg_src("flightgear-data-base", "usr/share/games/flightgear/Textures/")
NX = _pkg_src("nexuiz-data", "usr/share/games/nexuiz/data/data.pk3!")
UFO = _pkg_src("ufoai-textures", UFO_PREFIX)

V2 = [
    # grass
    MG("grass", "tilesets/birch_forest/textures/grass0.png"),
    MG("grass", "tilesets/birch_forest/textures/grass1.png"), MG("grass", "tilesets/mediterran/textures/grass0.png"),
    MG("grass", "tilesets/mediterran/textures/grass1.png"), MG("grass", "tilesets/pine_rock/textures/grass0.png"),
    MG("grass", "tilesets/pine_rock/textures/grass1.png"), RE("grass", "appleflap/applegrass.jpg"),
    RE("grass", "jojo/grass01.png"), RE("grass", "jojo/grass02.png"), RE("grass", "jojo/grass04.png"),
    RE("grass", "jojo/grass07.png"), RE("grass", "wicked/wickedgrass01.jpg"),
    RE("grass", "wicked/wickedgrass02.jpg"), RE("grass", "wicked/wickedgrass03.jpg"),
    STK("grass", "textures/grass2.jpg"), STK("grass", "textures/grass_dark.jpg"),
    STK("grass", "textures/racetrack_grass.jpg"), STK("grass", "tracks/introcutscene/grass.jpg"),
    STK("grass", "tracks/minigolf/racetrack_grass-dark.jpg"),
    STK("grass", "tracks/soccer_field/racetrack_grass.jpg"), STK("grass", "tracks/volcano_island/grass.jpg"),
    STK("grass", "tracks/zengarden/grass.jpg"), AD("grass", "aegean_anatolia/grass_01.png.cached.dds"),
    AD("grass", "aegean_anatolia/grass_02.png.cached.dds"), AD("grass", "aegean_anatolia/grass_03.png.cached.dds"),
    AD("grass", "aegean_anatolia/grass_dirt_01.png.cached.dds"),
    AD("grass", "aegean_anatolia/grass_dirt_02.png.cached.dds"),
    AD("grass", "aegean_anatolia/grass_dirt_03.png.cached.dds"),
    AD("grass", "alpine_arctic/grass_01.png.cached.dds"), AD("grass", "alpine_grass.png.cached.dds"),
    AD("grass", "alpine_grass_a.png.cached.dds"), AD("grass", "alpine_grass_b.png.cached.dds"),
    AD("grass", "alpine_grass_b_wild.png.cached.dds"), AD("grass", "alpine_grass_c.png.cached.dds"),
    AD("grass", "alpine_grass_d.png.cached.dds"), AD("grass", "alpine_grass_d_wild.png.cached.dds"),
    AD("grass", "alpine_grass_e.png.cached.dds"), AD("grass", "grass1.png.cached.dds"),
    AD("grass", "grass_dead.dds.cached.dds"), AD("grass", "grass_field.png.cached.dds"),
    AD("grass", "grass_mediterranean_dry_1024test.dds.cached.dds"), AD("grass", "india/grass_01.png.cached.dds"),
    AD("grass", "india/grass_dirt_01.png.cached.dds"), AD("grass", "medit_grass_field.dds.cached.dds"),
    AD("grass", "new_alpine_grass_b.dds.cached.dds"), AD("grass", "new_alpine_grass_dirt_a.png.cached.dds"),
    AD("grass", "sahara/flora_01.png.cached.dds"), AD("grass", "steppe/grass_01.png.cached.dds"),
    AD("grass", "steppe_grass_b.dds.cached.dds"), AD("grass", "steppe_grass_green_a.dds.cached.dds"),
    AD("grass", "temp_grass.png.cached.dds"), AD("grass", "temp_grass_c.png.cached.dds"),
    AD("grass", "temp_grass_d.png.cached.dds"), AD("grass", "temp_grass_long.png.cached.dds"),
    # gravel
    RE("gravel", "wicked/wickedground03.jpg"),
    AD("gravel", "aegean_anatolia/rocks_dirt_01.png.cached.dds"),
    AD("gravel", "aegean_anatolia/rocks_dirt_02.png.cached.dds"),
    AD("gravel", "alpine_arctic/gravel_dirt_01.png.cached.dds"), AD("gravel", "alpine_shore_rocks.dds.cached.dds"),
    AD("gravel", "desert_pebbles_rough.png.cached.dds"), AD("gravel", "desert_pebbles_rough_wet.png.cached.dds"),
    AD("gravel", "desert_shore_stones.dds.cached.dds"), AD("gravel", "desert_shore_stones_wet.dds.cached.dds"),
    AD("gravel", "dirt_rocks.dds.cached.dds"), AD("gravel", "india/rocks_dirt_01.png.cached.dds"),
    AD("gravel", "medit_river_rocks_dry.dds.cached.dds"), AD("gravel", "medit_river_rocks_wet.dds.cached.dds"),
    AD("gravel", "medit_rocks.dds.cached.dds"), AD("gravel", "medit_rocks_wet.dds.cached.dds"),
    AD("gravel", "shoreline_stoney_a.png.cached.dds"), AD("gravel", "steppe_river_rocks.dds.cached.dds"),
    AD("gravel", "steppe_river_rocks_wet.dds.cached.dds"), AD("gravel", "temp_dirt_gravel.dds.cached.dds"),
    AD("gravel", "temp_dirt_gravel_b.png.cached.dds"), AD("gravel", "temperate/rocks_dirt_01.png.cached.dds"),
    MG("gravel", "tilesets/pine_rock/textures/smallstones.png"), STK("gravel", "textures/stklama_gravelRoad_a.png"),
    FG("gravel", "Terrain/gravel_gray.png"), FG("gravel", "Terrain/gravel_brown.png"),
    FG("gravel", "Terrain/gravel_red.png"),
    # rock
    AD("rock", "alpine_arctic/cliff_01.png.cached.dds"), AD("rock", "alpine_arctic/cliff_02.png.cached.dds"),
    AD("rock", "alpine_cliff.dds.cached.dds"), AD("rock", "alpine_cliff_a.dds.cached.dds"),
    AD("rock", "alpine_cliff_b.dds.cached.dds"), AD("rock", "alpine_cliff_c.dds.cached.dds"),
    AD("rock", "alpine_mountainside.dds.cached.dds"), AD("rock", "cave_walls.dds.cached.dds"),
    AD("rock", "cliff volcanic coarse.dds.cached.dds"), AD("rock", "cliff volcanic light.dds.cached.dds"),
    AD("rock", "cliff_darkgray.dds.cached.dds"), AD("rock", "cliff_rocky.dds.cached.dds"),
    AD("rock", "desert_cliff_1.dds.cached.dds"), AD("rock", "desert_cliff_4.png.cached.dds"),
    AD("rock", "desert_cliff_5.png.cached.dds"), AD("rock", "medit_cliff_greek.png.cached.dds"),
    AD("rock", "medit_cliff_italia.dds.cached.dds"), FG("rock", "Terrain/rock_dark.png"),
    FG("rock", "Terrain/rock_brown2.png"),
    # sand
    RE("sand", "wicked/wickedground05.jpg"), MG("sand", "tilesets/desert4/textures/sand1.png"),
    MG("sand", "tilesets/desert4/textures/sand3.png"), NX("sand", "env/desert/desert_dn.tga"),
    RE("sand", "jojo/sand01.png"), STK("sand", "textures/hd_beach_01_d.png"), STK("sand", "textures/sand.png"),
    STK("sand", "textures/sand2.jpg"), STK("sand", "textures/stk_generic_sand_a.png"),
    STK("sand", "tracks/ancient_colosseum_labyrinth/sand.png"), STK("sand", "tracks/minigolf/sand.jpg"),
    STK("sand", "tracks/sandtrack/road.jpg"), STK("sand", "tracks/sandtrack/sand.png"),
    STK("sand", "tracks/zengarden/sand.jpg"), AD("sand", "aegean_anatolia/sand_01.png.cached.dds"),
    AD("sand", "aegean_anatolia/sand_01_wet.png.cached.dds"), AD("sand", "aegean_anatolia/sand_02.png.cached.dds"),
    AD("sand", "aegean_anatolia/sand_02_wet.png.cached.dds"), AD("sand", "beach_c.dds.cached.dds"),
    AD("sand", "beach_d.dds.cached.dds"), AD("sand", "desert_sand_dunes_100.dds.cached.dds"),
    AD("sand", "desert_sand_dunes_50.dds.cached.dds"), AD("sand", "desert_sand_smooth.dds.cached.dds"),
    AD("sand", "desert_sand_smooth_b.dds.cached.dds"), AD("sand", "medit_sand_messy.dds.cached.dds"),
    AD("sand", "nubia/dunes_01.png.cached.dds"), AD("sand", "nubia/sand_ripples.png.cached.dds"),
    AD("sand", "sahara/sand_02.png.cached.dds"), AD("sand", "sahara/sand_04.png.cached.dds"),
    AD("sand", "sand_dunes.dds.cached.dds"), AD("sand", "sand_sahara.dds.cached.dds"),
    FG("sand", "Terrain/sand6_hires.png"),
    # soil
    RE("soil", "wicked/wickedground04.jpg"),
    RE("soil", "wicked/wickedground06.jpg"), STK("soil", "textures/cracked-earth-texture.jpg"),
    STK("soil", "textures/dirt.jpg"), STK("soil", "textures/earth.png"),
    STK("soil", "textures/gfx_kartDirt_a_Albedo.png"),
    STK("soil", "textures/stktex_generic_earth_a.png"), STK("soil", "tracks/cave/Ground010_1K_Color.png"),
    STK("soil", "tracks/lighthouse/earth.png"), STK("soil", "textures/city_ground.jpg"),
    STK("soil", "textures/canyon_dirt_road.jpg"), RE("soil", "philipk/pk02/sand01_c.png"),
    AD("soil", "DirtTests.dds.cached.dds"), AD("soil", "DirtTests2.dds.cached.dds"),
    AD("soil", "DirtTests4.dds.cached.dds"), AD("soil", "aegean_anatolia/dirt_01.png.cached.dds"),
    AD("soil", "alpine_dirt.dds.cached.dds"), AD("soil", "desert_dirt_cracks.dds.cached.dds"),
    AD("soil", "desert_dirt_persia_1.png.cached.dds"), AD("soil", "desert_dirt_persia_2.png.cached.dds"),
    AD("soil", "desert_lakebed_dry.dds.cached.dds"), AD("soil", "desert_lakebed_dry_b.png.cached.dds"),
    AD("soil", "dirt_broken_rocks.dds.cached.dds"), AD("soil", "dirt_brown_a.dds.cached.dds"),
    AD("soil", "dirt_brown_c.dds.cached.dds"), AD("soil", "dirt_brown_e.dds.cached.dds"),
    AD("soil", "dirt_cracked_b.dds.cached.dds"), AD("soil", "dirt_flaky.dds.cached.dds"),
    AD("soil", "dirt_pebbles_wet.dds.cached.dds"), AD("soil", "dirt_rocky.dds.cached.dds"),
    AD("soil", "dirt_rugged.dds.cached.dds"), AD("soil", "india/dirt_01.png.cached.dds"),
    AD("soil", "india/dirt_02.png.cached.dds"), AD("soil", "india/mud_01.png.cached.dds"),
    AD("soil", "medit_dirt_e.png.cached.dds"), AD("soil", "mud_flats.dds.cached.dds"),
    AD("soil", "mud_slide.dds.cached.dds"), AD("soil", "mud_temp.dds.cached.dds"),
    AD("soil", "new_savanna_dirt_c.dds.cached.dds"), AD("soil", "nubia/dirt_01.png.cached.dds"),
    AD("soil", "nubia/dirt_03.png.cached.dds"), AD("soil", "nubia/dirt_cracks_01.png.cached.dds"),
    AD("soil", "sahara/dirt_01.png.cached.dds"), AD("soil", "sahara/dirt_cracks_01.png.cached.dds"),
    AD("soil", "savanna_dirt_a.png.cached.dds"), AD("soil", "savanna_dirt_b.png.cached.dds"),
    AD("soil", "savanna_dirt_plants_cracked.png.cached.dds"), AD("soil", "savanna_riparian_dry.png.cached.dds"),
    AD("soil", "steppe_dirt_a.dds.cached.dds"), AD("soil", "steppe_dirt_b.dds.cached.dds"),
    AD("soil", "temp_dirt_mud_mk1.dds.cached.dds"), AD("soil", "temp_dirt_mud_mk2.dds.cached.dds"),
    AD("soil", "temp_mud_a.png.cached.dds"), FG("soil", "Terrain/dirt3.dds"),
    # wood
    MG("wood", "techs/megapack/factions/romans/units/forum/models/old_wood_door.jpg"),
    MG("wood", "techs/megapack/factions/romans/units/gladiator_school/models/wood.png"),
    MG("wood", "tilesets/desert4/models/oldwood.png"), RE("wood", "dziq/boards01.jpg"),
    RE("wood", "trak/trak4/wood1c.jpg"), RE("wood", "trak/trak4/wood1d.jpg"), RE("wood", "wicked/wickedwood04.jpg"),
    RE("wood", "wicked/wickedwood05.jpg"), RE("wood", "wicked/wickedwood06.jpg"),
    RE("wood", "wicked/wickedwood08.jpg"), STK("wood", "library/stklib_old_house_a/dark-wall-wood.png"),
    STK("wood", "library/stklib_old_house_a/stktex_generic_WoodA.png"), STK("wood", "textures/canyon_boards.png"),
    STK("wood", "textures/oldWood.png"), STK("wood", "textures/stktex_generic_WoodG.png"),
    STK("wood", "textures/woodBridge.jpg"), STK("wood", "textures/wood_planks1.jpg"),
    STK("wood", "tracks/fortmagma/wood_planks1.jpg"), STK("wood", "tracks/hacienda/woodBridge.jpg"),
    STK("wood", "tracks/mines/wall_wood1.jpg"), AD("wood", "bridge_wood_a.png.cached.dds"),
    AD("wood", "bridge_wood_b.png.cached.dds"), AD("wood", "bridge_wood_c.png.cached.dds"),
    # bark
    MG("bark", "tilesets/pine_rock/models/pine.png", crop=(40, 450, 300, 940)),
    MG("bark", "tilesets/pine_rock/models/deadpine.png", crop=(500, 0, 1020, 1024)),
    RE("bark", "dziq/meshtex/palm_tree_trunk.jpg", crop=(520, 150, 960, 900)),
    STK("bark", "library/stklib_pinetree_b/fir_bark.png"), STK("bark", "textures/TiZeta_barkM.png"),
    STK("bark", "textures/palmBark.jpg"), STK("bark", "textures/stktex_treeBark_b.png"),
    STK("bark", "tracks/black_forest/fir_bark.png"), STK("bark", "tracks/minigolf/trunk_bark.png"),
    STK("bark", "library/stklib_deadBranch_a/trees_bark_001_col.jpg"),
    # brick
    RE("brick", "dziq/brick_wall01.jpg"), RE("brick", "dziq/brick_wall02.jpg"),
    RE("brick", "mikeplus64/bricks2_c.png"), RE("brick", "mikeplus64/bricks_c.png"),
    RE("brick", "trak/trak4/brick1.jpg"), RE("brick", "trak/trak4/brick2.jpg"),
    RE("brick", "trak/trak4/brick2a.jpg"), RE("brick", "trak/trak4/brick2b.jpg"),
    RE("brick", "wicked/highqualitybrick.jpg"), STK("brick", "textures/city_bricks.png"),
    STK("brick", "tracks/ancient_colosseum_labyrinth/3td_BrickOldRound_01.jpg"),
    # snow
    RE("snow", "appleflap/snow.jpg"), RE("snow", "wicked/wickedsnow01.jpg"),
    RE("snow", "wicked/wickedsnow02.jpg"), STK("snow", "textures/snow.png"),
    STK("snow", "textures/stk_generic_snow_a.png"), STK("snow", "textures/stktex_earthSnow_a.png"),
    AD("snow", "alpine_arctic/snow_01.png.cached.dds"), AD("snow", "alpine_arctic/snow_02.png.cached.dds"),
    AD("snow", "alpine_snow_a.dds.cached.dds"), AD("snow", "alpine_snow_b.dds.cached.dds"),
    AD("snow", "alpine_snow_glacial.dds.cached.dds"), AD("snow", "polar_snow_a.dds.cached.dds"),
    AD("snow", "polar_snow_b.dds.cached.dds"), AD("snow", "polar_snow_glacial.dds.cached.dds"),
    AD("snow", "snow rough.dds.cached.dds"), AD("snow", "snow.dds.cached.dds"), AD("snow", "snow_01.dds.cached.dds"),
    AD("snow", "snow_02.dds.cached.dds"), AD("snow", "snow_glacial_01.dds.cached.dds"),
    AD("snow", "snow_new.dds.cached.dds"),
    # rusty_metal
    RE("rusty_metal", "dziq/metal_rusty01a.jpg"), RE("rusty_metal", "dziq/metal_rusty01b.jpg"),
    RE("rusty_metal", "trak/trak4/rust1.jpg"), RE("rusty_metal", "trak/trak4/rust1a.jpg"),
    RE("rusty_metal", "trak/trak4/rust1b.jpg"), RE("rusty_metal", "trak/trak4/rust1c.jpg"),
    RE("rusty_metal", "trak/trak4/rust2.jpg"), RE("rusty_metal", "trak/trak4/rust2b.jpg"),
    STK("rusty_metal", "textures/stkt_rustedMetal_a.png"),
    # concrete
    RE("concrete", "appleflap/dirtyconcrete.jpg"), RE("concrete", "dziq/concrete_forms01.jpg"),
    RE("concrete", "trak/trak4/concrete1a.jpg"), RE("concrete", "trak/trak4/concrete1b.jpg"),
    RE("concrete", "trak/trak4/concrete2a.jpg"), RE("concrete", "trak/trak4/concrete3.jpg"),
    RE("concrete", "trak/trak4/concrete4a.jpg"), RE("concrete", "trak/trak4/concrete4b.jpg"),
    RE("concrete", "trak/trak4/concrete5a.jpg"), RE("concrete", "trak/trak4/concrete5b.jpg"),
    RE("concrete", "trak/trak4/concrete6.jpg"), STK("concrete", "textures/city_concrete.png"),
    STK("concrete", "textures/concrete2.png"), STK("concrete", "textures/concrete_plain.png"),
    STK("concrete", "tracks/stk_enterprise/concrete_plain.png"),
    STK("concrete", "tracks/stk_enterprise/concrete_plain_dark.png"),
    FG("concrete", "Runway/pc_tiedown.png", crop=(0, 0, 500, 1024)), FG("concrete", "Runway/pc_tiedown_alt.png"),
    # asphalt
    RE("asphalt", "luckystrike/asphalt_01.jpg"), STK("asphalt", "textures/tarmac.jpg"),
    STK("asphalt", "textures/city_asphalt_2.jpg", crop=(0, 24, 1024, 488)),
    UFO("asphalt", "tex_ctp1/asphalt_b_1.jpg"), UFO("asphalt", "tex_mattn/street010.jpg"),
    # paving
    AD("paving", "aegean_anatolia/paving_01.png.cached.dds"),
    AD("paving", "aegean_anatolia/paving_02.png.cached.dds"),
    AD("paving", "alpine_arctic/paving_stones_01.png.cached.dds"),
    AD("paving", "alpine_arctic/paving_stones_02.png.cached.dds"), AD("paving", "india/paving_01.png.cached.dds"),
    AD("paving", "india/paving_02.png.cached.dds"), AD("paving", "medit_city_tile.dds.cached.dds"),
    AD("paving", "nubia/paving_02.png.cached.dds"),
    AD("paving", "nubia/paving_stones_01.png.cached.dds"), AD("paving", "road1.dds.cached.dds"),
    AD("paving", "road_5.dds.cached.dds"), AD("paving", "road_flat.dds.cached.dds"),
    AD("paving", "road_muddy.dds.cached.dds"),
    AD("paving", "sahara/paving_02.png.cached.dds"), AD("paving", "sahara/paving_stones_00.png.cached.dds"),
    AD("paving", "sahara/paving_stones_01.png.cached.dds"), AD("paving", "savanna_tile_a.png.cached.dds"),
    AD("paving", "temp_road.dds.cached.dds"), AD("paving", "temp_road_overgrown.dds.cached.dds"),
    AD("paving", "temperate/paving_001.png.cached.dds"), AD("paving", "temperate/paving_002.png.cached.dds"),
    AD("paving", "temperate/paving_003.png.cached.dds"), AD("paving", "tropic_citytile_a.png.cached.dds"),
    # tiles
    AD("tiles", "medit_city_pavement.png.cached.dds"), AD("tiles", "medit_city_tile_02.dds.cached.dds"),
    AD("tiles", "medit_city_tile_dirt.dds.cached.dds"), AD("tiles", "road_tropic_b.dds.cached.dds"),
    AD("tiles", "temp_road_broken.png.cached.dds"), RE("tiles", "mikeplus64/decktiles_c.png"),
    RE("tiles", "trak/trak4/tile1.jpg"), RE("tiles", "trak/trak4/tile2a.jpg"), RE("tiles", "trak/trak4/tile2b.jpg"),
    UFO("tiles", "tex_buildings/tile01.png"), UFO("tiles", "tex_buildings/tile02.png"),
    UFO("tiles", "tex_buildings/tile03.png"), UFO("tiles", "tex_ctp1/tiles_m_3.jpg"),
    UFO("tiles", "tex_ctp1/tiles_r_1.jpg"), UFO("tiles", "tex_ctp1/tiles_w_1.jpg"),
    # foliage
    AD("foliage", "medit_rocks_grass_shrubs.dds.cached.dds"), AD("foliage", "medit_rocks_shrubs.dds.cached.dds"),
    AD("foliage", "medit_shrubs.dds.cached.dds"), AD("foliage", "savanna_shrubs_a_wetseason.png.cached.dds"),
    AD("foliage", "temp_mud_plants.dds.cached.dds"),
    AD("foliage", "temp_plants_bog.png.cached.dds"), AD("foliage", "temp_plants_bog_aut.png.cached.dds"),
    AD("foliage", "tropic_citytile_plants.png.cached.dds"), AD("foliage", "tropic_cliff_a_plants.png.cached.dds"),
    AD("foliage", "tropic_cliff_b_plants.png.cached.dds"), AD("foliage", "tropic_dirt_a_plants.png.cached.dds"),
    AD("foliage", "tropic_dirt_b_plants.png.cached.dds"), AD("foliage", "tropic_plants.png.cached.dds"),
    AD("foliage", "tropic_plants_a.png.cached.dds"), AD("foliage", "tropic_plants_b.png.cached.dds"),
    UFO("foliage", "tex_ctp1/hedge02.jpg"),
    UFO("foliage", "tex_mattn/hedge001.jpg"), UFO("foliage", "tex_nature/hedge001.jpg"),
    STK("foliage", "textures/TiZeta_ivy.png"),
    # forest_floor
    AD("forest_floor", "aegean_anatolia/forestfloor_01.png.cached.dds"),
    AD("forest_floor", "alpine_arctic/forestfloor_01.png.cached.dds"),
    AD("forest_floor", "alpine_arctic/forestfloor_02.png.cached.dds"),
    AD("forest_floor", "india/dirt_03.png.cached.dds"), AD("forest_floor", "india/forestfloor_001.png.cached.dds"),
    AD("forest_floor", "india/forestfloor_002.png.cached.dds"),
    AD("forest_floor", "nubia/forestfloor_01.png.cached.dds"),
    AD("forest_floor", "sahara/forestfloor_01.png.cached.dds"),
    AD("forest_floor", "sahara/forestfloor_02.png.cached.dds"),
    AD("forest_floor", "temp_forestfloor_a.dds.cached.dds"),
    AD("forest_floor", "temp_forestfloor_aut.png.cached.dds"),
    AD("forest_floor", "temp_forestfloor_autumn.dds.cached.dds"),
    AD("forest_floor", "temp_forestfloor_pine.png.cached.dds"),
    AD("forest_floor", "temperate/autumn_forestfloor_003.png.cached.dds"),
    AD("forest_floor", "temperate/autumn_forestfloor_004.png.cached.dds"),
    AD("forest_floor", "temperate/forestfloor_003.png.cached.dds"),
    AD("forest_floor", "temperate/forestfloor_004.png.cached.dds"),
]

SOURCES: list = [*V1, *V2]
CLASSES = ["grass", "gravel", "rock", "sand", "soil", "wood", "bark", "brick", "snow", "rusty_metal", "concrete",
           "asphalt", "paving", "tiles", "foliage", "forest_floor"]


def package_root(root: str, pkg: str) -> str:
    d = os.path.join(root, pkg)
    if os.path.isdir(d):
        return d
    if pkg in ("ufoai-textures", "extremetuxracer-data") and os.path.isdir(f"/usr/share/doc/{pkg}"):
        return "/"  # the v1 sources, installed with apt
    raise FileNotFoundError(f"package {pkg} not found under {root}/{pkg}: run scripts/setup_data_v2.sh "
                            f"(or dpkg-deb -x {pkg}_*.deb {root}/{pkg})")


def package_version(root: str, pkg: str) -> str | None:
    d = package_root(root, pkg)
    if d == "/":
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                                 timeout=10)
            return out.stdout.strip() or None
        except Exception:
            return None
    ch = os.path.join(d, "usr/share/doc", pkg, "changelog.Debian.gz")
    if os.path.exists(ch):
        import gzip
        with gzip.open(ch, "rt", errors="replace") as f:
            first = f.readline()
        if "(" in first:
            return first.split("(", 1)[1].split(")", 1)[0]
    return None


# package -> (installed prefix, upstream prefix) for matching paths against its DEP-5 copyright file
UPSTREAM_PREFIX = {
    "supertuxkart-data": ("usr/share/games/supertuxkart/", ""),
    "redeclipse-data": ("usr/share/games/redeclipse/", ""),
}


def parse_dep5(text: str) -> list:
    """Stanzas of a machine-readable debian/copyright: list of (file patterns, licence line, comment)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, val = line.split(":", 1)
                fields[key] = val.strip()
        if "Files" in fields and "License" in fields:
            out.append((fields["Files"].split(), fields["License"].splitlines()[0].strip(),
                        fields.get("Comment", "")))
    return out


_DEP5_CACHE: dict = {}


def licence_of(root: str, pkg: str, path: str) -> tuple:
    """(licence, comment) of ``path`` (as in Src.path) from the package's DEP-5 copyright file: the last
    stanza whose Files pattern matches wins (``*`` matches across '/'). ('', '') if none."""
    import fnmatch
    import glob
    if pkg not in _DEP5_CACHE:
        base = package_root(root, pkg)
        files = glob.glob(os.path.join(base, "usr/share/doc", pkg, "copyright"))
        text = ""
        if files:
            with open(files[0], errors="replace") as f:
                text = f.read()
        _DEP5_CACHE[pkg] = parse_dep5(text)
    inst, up = UPSTREAM_PREFIX.get(pkg, ("", ""))
    p = path.split("!", 1)[0]
    if inst and p.startswith(inst):
        p = up + p[len(inst):]
    hit = ("", "")
    for pats, lic, comment in _DEP5_CACHE[pkg]:
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.rstrip("/") + "/*") for pat in pats):
            hit = (lic, comment)
    return hit


class _Reader:
    def __init__(self, root: str):
        self.root = root
        self.zips: dict = {}

    def read(self, pkg: str, path: str) -> bytes:
        base = package_root(self.root, pkg)
        if "!" in path:
            arc, member = path.split("!", 1)
            full = os.path.join(base, arc)
            if full not in self.zips:
                self.zips[full] = zipfile.ZipFile(full)
            return self.zips[full].read(member)
        with open(os.path.join(base, path), "rb") as f:
            return f.read()

    def close(self):
        for z in self.zips.values():
            z.close()


FREE_LICENCES = ("GPL", "CC-BY", "CC0", "public-domain", "Expat", "MIT", "Zlib")
FIXED_LICENCE = {"nexuiz-data": "GPL-2+"}  # its copyright file is not machine-readable: "GPL version 2 or later"
DDS_SCALE = 0.5  # DXT-compressed sources: halve to hide the 4x4 block structure
CLASS_CAP_MPX = 4.0  # per class (train + held-out): larger classes get their sources centre-cropped (water-filling)
SIMILAR = 0.85  # grayscale 32x32 thumbnail correlation above which two sources count as one photo (one group)
DUPLICATE = 0.995  # ... above which (same size) the later one is dropped as a copy


def resolve_licence(root: str, s: Src) -> str:
    if s.licence:
        return s.licence
    if s.pkg in FIXED_LICENCE:
        return FIXED_LICENCE[s.pkg]
    return licence_of(root, s.pkg, s.path)[0]


def is_free(licence: str) -> bool:
    return bool(licence) and any(licence.startswith(f) for f in FREE_LICENCES)


def load_source(reader: _Reader, s: Src) -> np.ndarray:
    import cv2
    from PIL import Image
    with Image.open(io.BytesIO(reader.read(s.pkg, s.path))) as im:
        if im.mode in ("P", "PA", "LA", "RGBA", "I;16"):
            im = im.convert("RGBA")
        img = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    if s.crop:
        x0, y0, x1, y1 = s.crop
        img = np.ascontiguousarray(img[y0:y1, x0:x1])
    scale = s.scale or (DDS_SCALE if s.path.lower().endswith(".dds") else None)
    if scale:
        h, w = img.shape[:2]
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    if max(h, w) > MAX_SIDE:
        f = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return img


def repeats_inside(img: np.ndarray, tol: float = 2.0) -> bool:
    """True if the image is a 2x1 or 1x2 tiling of one half (a tiled copy, not more photo)."""
    h, w = img.shape[:2]
    a = img.astype(np.int16)
    if w % 2 == 0 and np.abs(a[:, : w // 2] - a[:, w // 2:]).mean() < tol:
        return True
    return h % 2 == 0 and bool(np.abs(a[: h // 2] - a[h // 2:]).mean() < tol)


def untile(img: np.ndarray, tol: float = 2.0) -> np.ndarray:
    """Cut an image that is a 2x1 / 1x2 tiling of one half down to that half (repeatedly)."""
    while True:
        h, w = img.shape[:2]
        a = img.astype(np.int16)
        if w % 2 == 0 and np.abs(a[:, : w // 2] - a[:, w // 2:]).mean() < tol:
            img = np.ascontiguousarray(img[:, : w // 2])
        elif h % 2 == 0 and np.abs(a[: h // 2] - a[h // 2:]).mean() < tol:
            img = np.ascontiguousarray(img[: h // 2])
        else:
            return img


def source_id(s: Src) -> str:
    return f"{s.pkg}:{s.path}"


def name_stem(s: Src) -> str:
    """Variant-insensitive name: 'rust1a' -> 'rust1', 'dirt_brown_c' -> 'dirt_brown', 'sand_01_wet' -> 'sand_01'."""
    import re
    d, base = os.path.split(s.path.replace("!", "/"))
    base = base.lower().split(".")[0]
    base = re.sub(r"(_(wet|aut|autumn|wild|red|dirty|rotate|wetseason|dark|light|alt))+$", "", base)
    base = re.sub(r"(?<=[0-9])[a-e]$", "", base)
    base = re.sub(r"_[a-e]$", "", base)
    return f"{s.pkg}:{d}/{base}"


def _thumb(img: np.ndarray) -> np.ndarray:
    import cv2
    g = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    g -= g.mean()
    return g.ravel() / (np.linalg.norm(g) + 1e-9)


def group_sources(loaded: list) -> tuple:
    """loaded: [(Src, img)] of one class -> (group name per item, [indices of exact copies to drop]).
    Union of: same name stem (variants), and thumbnails correlating > SIMILAR (recoloured copies across folders,
    also under 90-degree rotations and flips)."""
    n = len(loaded)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    stems: dict = {}
    for i, (s, _) in enumerate(loaded):
        j = stems.setdefault(name_stem(s), i)
        parent[find(i)] = find(j)
    thumbs = []
    for _, img in loaded:
        t = [_thumb(np.ascontiguousarray(np.rot90(img, k)[:, ::f])) for k in range(4) for f in (1, -1)]
        thumbs.append(np.stack(t))
    drop = []
    for i in range(n):
        for j in range(i):
            c = float((thumbs[i] @ thumbs[j][0]).max())
            if c > SIMILAR:
                parent[find(i)] = find(j)
            if c > DUPLICATE and loaded[i][1].shape == loaded[j][1].shape and j not in drop:
                drop.append(i)
                break
    names = []
    for i in range(n):
        r = find(i)
        names.append(name_stem(loaded[r][0]))
    return names, drop


def assign_split(groups: dict) -> set:
    """groups: name -> pixels (one class). Held-out groups: in sha1 order, add a group while the held-out share
    stays <= HELD_OUT_TARGET[1], until it reaches HELD_OUT_TARGET[0]; at least one group if the class has two
    or more; deterministic."""
    if len(groups) < 2:
        return set()
    total = sum(groups.values())
    lo, hi = HELD_OUT_TARGET
    held: set = set()
    px = 0
    for g in sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest()):
        if px >= lo * total:
            break
        if px + groups[g] <= hi * total and len(held) < len(groups) - 1:
            held.add(g)
            px += groups[g]
    if not held:
        held.add(min(groups, key=groups.get))
    return held


def cap_class(imgs: list, cap_px: float) -> list:
    """Centre-crop the largest images (keeping aspect, sides >= MIN_SIDE) so the class total is about cap_px:
    water-filling, i.e. every image keeps min(area, A) pixels for one A."""
    areas = [im.shape[0] * im.shape[1] for im in imgs]
    if sum(areas) <= cap_px:
        return imgs
    lo, hi = MIN_SIDE * MIN_SIDE, max(areas)
    for _ in range(50):
        mid = (lo + hi) / 2
        if sum(min(a, mid) for a in areas) > cap_px:
            hi = mid
        else:
            lo = mid
    out = []
    for im, a in zip(imgs, areas):
        if a <= lo:
            out.append(im)
            continue
        h, w = im.shape[:2]
        f = (lo / a) ** 0.5
        nh, nw = max(MIN_SIDE, int(h * f)), max(MIN_SIDE, int(w * f))
        y, x = (h - nh) // 2, (w - nw) // 2
        out.append(np.ascontiguousarray(im[y:y + nh, x:x + nw]))
    return out


def collect(root: str, quality: int = 93, sources: list | None = None, classes: list | None = None,
            cap_mpx: float = CLASS_CAP_MPX) -> tuple:
    """Read, check, group, cap and split the sources: ``(classes, items, info)`` for ``data.write_pack``
    (``data.build_pack`` does both)."""
    sources = SOURCES if sources is None else sources
    classes = CLASSES if classes is None else classes
    reader = _Reader(root)
    rejected = []
    items = []
    pkgs: dict = {}
    loaded_all = []
    untiled: set = set()  # indices of sources that were a 2x tiling of themselves, cut to one tile
    for s in sources:
        if s.cls not in classes:
            raise ValueError(f"source {source_id(s)}: class {s.cls!r} not in CLASSES")
        lic = resolve_licence(root, s)
        if not is_free(lic):
            rejected.append({"source": source_id(s), "class": s.cls, "why": f"licence not known free: {lic!r}"})
            continue
        img = load_source(reader, s)
        if min(img.shape[:2]) < MIN_SIDE:
            rejected.append({"source": source_id(s), "class": s.cls,
                             "why": f"smaller than {MIN_SIDE} px: {list(img.shape[:2])}"})
            continue
        if repeats_inside(img):
            half = untile(img)
            if min(half.shape[:2]) < MIN_SIDE:
                rejected.append({"source": source_id(s), "class": s.cls,
                                 "why": f"a tiled copy of itself; its tile {list(half.shape[:2])} is under "
                                        f"{MIN_SIDE} px"})
                continue
            untiled.add(len(loaded_all))
            img = half
        loaded_all.append((s._replace(licence=lic), img))
    # one photo under two labels: keep the first (class order), refuse the others
    thumbs = [_thumb(img) for _, img in loaded_all]
    bad = set()
    for i in range(len(loaded_all)):
        for j in range(i):
            si, sj = loaded_all[i][0], loaded_all[j][0]
            if si.cls != sj.cls and j not in bad and float(thumbs[i] @ thumbs[j]) > SIMILAR:
                bad.add(i)
                rejected.append({"source": source_id(si), "class": si.cls,
                                 "why": f"same photo as {source_id(sj)} in class {sj.cls}"})
                break
    for c in classes:
        idx = [i for i, x in enumerate(loaded_all) if x[0].cls == c and i not in bad]
        loaded = [loaded_all[i] for i in idx]
        groups, drop = group_sources(loaded)
        for i in drop:
            rejected.append({"source": source_id(loaded[i][0]), "class": c,
                             "why": "a copy or recolour of another source (thumbnail correlation > "
                                    f"{DUPLICATE})"})
        keep = [i for i in range(len(loaded)) if i not in drop]
        imgs = cap_class([loaded[i][1] for i in keep], cap_mpx * 1e6)
        gpx: dict = {}
        for i, img in zip(keep, imgs):
            gpx[groups[i]] = gpx.get(groups[i], 0) + img.shape[0] * img.shape[1]
        held = assign_split(gpx)
        for i, img in zip(keep, imgs):
            s = loaded[i][0]
            pkgs.setdefault(s.pkg, set()).add(s.licence)
            meta = {"split": "held_out" if groups[i] in held else "train", "source": source_id(s),
                    "group": groups[i], "package": s.pkg, "path": s.path, "licence": s.licence}
            if s.crop:
                meta["crop"] = list(s.crop)
            if idx[i] in untiled:
                meta["untiled"] = True
            if img.shape != loaded[i][1].shape:
                meta["centre_crop_hw"] = list(img.shape[:2])
            items.append((img, classes.index(c), meta))
    reader.close()
    info = {
        "packages": {p: {"version": package_version(root, p), "licences": sorted(v)} for p, v in sorted(pkgs.items())},
        "split": "held_out = whole source images: per class, split groups (one photo with its variants and "
                 f"recoloured copies) in sha1 order until >= {HELD_OUT_TARGET[0]:.0%} of the class's pixels (at "
                 f"most {HELD_OUT_TARGET[1]:.0%}); no source or group is in both splits",
        "preprocessing": f"RGB; optional crop per source; DDS halved; long side capped at {MAX_SIDE} px (INTER_AREA); "
                         f"sources under {MIN_SIDE} px and copies/recolours dropped, 2x tilings of one tile cut to "
                         f"the tile; per class at most ~{cap_mpx} Mpx (largest sources centre-cropped); JPEG "
                         f"q{quality} 4:4:4",
        "rejected_at_build": rejected,
    }
    return classes, items, info
