"""The GIMP adapter: everything the plug-in reads from an image or writes into it goes through here.

Reads pixels, the selection, channels and layer masks as bytes in a babl format; inserts the engine's answer as
a new layer inside one undo group. Coordinates: the selection, channels and boxes are in *image* coordinates;
a layer's buffer is read at (box - the layer's offsets). Works alike in GIMP 3.0 and 3.2: enums are compared
by value, and the results of libgimp calls that report success are checked.
"""
import sys
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import nc_pixels as px
from gi.repository import Gegl, Gimp
from nc_engine import UserError


def _rect(box):
    return Gegl.Rectangle.new(int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def _checked(result, what):
    """The values of a libgimp call that returns (success, value, ...); a failed call is a UserError."""
    ok, *values = result
    if not ok:
        raise UserError(f"GIMP could not {what}.")
    return values


def _ok(result, what):
    """A libgimp call's status (a bool, or the object it made): a failed call (False or None) is a UserError; from
    GIMP 3.2.6 a failing call prints nothing, so every result is looked at."""
    if result is None or result is False:
        raise UserError(f"GIMP could not {what}. The image was left as it was.")
    return result


def offsets(drawable):
    ox, oy = _checked(drawable.get_offsets(), f"tell where '{drawable.get_name()}' lies")
    return ox, oy


def _read(drawable, box, fmt):
    """Bytes of ``drawable``'s own buffer under ``box`` (its own coordinates) in babl format ``fmt`` (zero
    outside)."""
    return bytes(drawable.get_buffer().get(_rect(box), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def read_buffer(drawable, box_image, fmt):
    """Pixels of ``drawable`` under an image-space box, as bytes in babl format ``fmt`` (zero outside)."""
    return _read(drawable, px.to_layer(box_image, offsets(drawable)), fmt)


def read_selection(image, box):
    """The selection under an image box, u8 (feathered selections keep their soft values)."""
    return _read(image.get_selection(), box, "Y u8")


def read_channel(channel, box):
    return _read(channel, box, "Y u8")


def layer_box(layer):
    ox, oy = offsets(layer)
    return (ox, oy, layer.get_width(), layer.get_height())


def precision_key(precision):
    """'u8', 'u16' or 'float' for a Gimp.Precision, compared by value: PyGObject >= 3.52 (GIMP 3.2's stack)
    makes GI enums Python IntEnums whose names and text differ from 3.50's (GIMP 3.0's)."""
    p = Gimp.Precision
    if precision in (p.U8_LINEAR, p.U8_NON_LINEAR, p.U8_PERCEPTUAL):
        return "u8"
    if precision in (p.U16_LINEAR, p.U16_NON_LINEAR, p.U16_PERCEPTUAL):
        return "u16"
    return "float"  # 32-bit integer, half, float and double images travel as float32


def pixel_format(image, drawable):
    return px.PixelFormat(drawable.is_gray(), drawable.has_alpha(), precision_key(image.get_precision()))


def feature_region(layer):
    """(u8 mask over the whole layer or None for 'all of it', description) of a reference layer."""
    whole = (0, 0, layer.get_width(), layer.get_height())
    mask = layer.get_mask()
    if mask is not None:
        return _read(mask, whole, "Y u8"), "its layer mask"
    if layer.has_alpha():
        data = px.alpha_of(_read(layer, whole, "Y'A u8"))
        if data.strip(b"\xff"):
            return data, "its alpha"
    return None, "the whole layer"


def feature_mask_crop(layer, box):
    """The reference's feature mask (layer mask, else alpha, else the layer's extent) over an image box."""
    mask = layer.get_mask()
    if mask is not None:
        return read_buffer(mask, box, "Y u8")
    if layer.has_alpha():
        return px.alpha_of(read_buffer(layer, box, "Y'A u8"))
    lb = layer_box(layer)
    return px.paste_mask(box[2], box[3], (lb[0] - box[0], lb[1] - box[1], lb[2], lb[3]))


def selection_region(image):
    """The selection's bounding box (image coordinates) or None when nothing is selected."""
    if Gimp.Selection.is_empty(image):
        return None
    non_empty, x1, y1, x2, y2 = _checked(Gimp.Selection.bounds(image), "read the selection's bounds")
    if not non_empty or x2 <= x1 or y2 <= y1:
        return None
    return px.box_from_bounds(x1, y1, x2, y2)


def label_channels(image):
    """[(class as typed, channel)] of the image's channels named 'label: <class>'."""
    out = []
    for ch in image.get_channels():
        cls = px.label_class(ch.get_name())
        if cls:
            out.append((cls, ch))
    return out


def pick_layer(drawables):
    """The one layer a procedure works on, or a UserError saying what to select."""
    if not drawables:
        raise UserError("No layer is active. Select one layer in the Layers dialog.")
    if len(drawables) != 1:
        raise UserError(f"Neural Collage works on one layer at a time; {len(drawables)} drawables are "
                        "selected.")
    d = drawables[0]
    if not d.is_layer() or d.is_layer_mask():
        raise UserError(f"Neural Collage works on a layer; '{d.get_name()}' is a mask or channel. "
                        "Select its layer.")
    if d.is_group_layer():
        raise UserError(f"'{d.get_name()}' is a layer group. Select a normal layer (or merge the group "
                        "first).")
    return d


def _image_type(image, alpha):
    if image.get_base_type() == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    return Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE


def _add_result_layer(image, layer, parent, position, box, arr, name, write_mask, added):
    """One result layer inserted at ``position`` in ``parent`` (None: the image's top level), filled from ``arr``
    (see insert_result); appended to ``added`` as soon as it is in the image."""
    h, w = int(arr.shape[0]), int(arr.shape[1])
    channels = int(arr.shape[2]) if len(arr.shape) == 3 else 1
    babl = px.babl_for_array(arr.dtype, channels)
    bpp = channels * px.itemsize(arr.dtype)
    alpha = layer.has_alpha() if write_mask is not None else channels in (2, 4)
    data = bytes(arr.data)
    new = _ok(Gimp.Layer.new(image, name, w, h, _image_type(image, alpha), 100.0, Gimp.LayerMode.NORMAL),
              "create the result layer")
    _ok(image.insert_layer(new, parent, position), f"add the layer '{name}'")
    added.append(new)
    _ok(new.set_offsets(int(box[0]), int(box[1])), "place the result layer")
    buf = new.get_buffer()
    if write_mask is None:
        buf.set(_rect((0, 0, w, h)), babl, data)
    else:
        layer.get_buffer().copy(_rect(px.to_layer(box, offsets(layer))), Gegl.AbyssPolicy.NONE, buf,
                                _rect((0, 0, w, h)))
        for rect, chunk in px.masked_chunks(data, write_mask, w, h, bpp):
            buf.set(_rect(rect), babl, chunk)
    buf.flush()
    _ok(new.update(0, 0, w, h), "update the result layer")
    return new


def _in_one_undo_group(image, layer, work):
    """Run ``work(position, added)`` inside one undo group (one undo step); whatever it added to the image is
    removed again if a step fails. ``position``: the active layer's, so results land right above it."""
    position = image.get_item_position(layer)
    if position < 0:
        raise UserError(f"GIMP could not find the layer '{layer.get_name()}' in the image.")
    Gimp.context_push()
    started = image.undo_group_start()
    added = []
    try:
        _ok(started, "start an undo group")
        return work(position, added)
    except Exception:
        for item in reversed(added[:1]):  # the first one added holds the others (a group) or is the only one
            try:
                if item.get_image() is not None and not image.remove_layer(item):
                    sys.stderr.write("Neural Collage: GIMP could not remove the unfinished result layer\n")
            except Exception:  # noqa: BLE001 - keep the original error
                traceback.print_exc()
        raise
    finally:
        if started:
            image.undo_group_end()
        Gimp.context_pop()


def insert_result(image, layer, box, arr, name, write_mask=None):
    """Insert a new layer right above ``layer`` at the image position of ``box``, inside one undo group.

    With ``write_mask`` (u8 over the box) the new layer starts as an exact copy of ``layer`` under the box
    (a GEGL buffer copy: no colour conversion, so every pixel outside the mask is bit-identical in any
    precision) and ``arr`` is written only where the mask is non-zero. Without it ``arr`` fills the layer
    (the projection). Anything added is removed again if a step fails."""
    def work(position, added):
        return _add_result_layer(image, layer, layer.get_parent(), position, box, arr, name, write_mask, added)

    return _in_one_undo_group(image, layer, work)


def insert_variations(image, layer, box, results, group_name, write_mask=None):
    """Insert the variations ``results`` ([(name, array)], first = bottom) as layers of ONE new layer group
    right above ``layer``, all inside one undo group (one undo step); returns the group. Each layer is filled
    as insert_result fills its one layer. Anything added is removed again if a step fails."""
    def work(position, added):
        group = _ok(Gimp.GroupLayer.new(image, group_name), "create the layer group for the variations")
        _ok(image.insert_layer(group, layer.get_parent(), position), f"add the layer group '{group_name}'")
        added.append(group)
        for name, arr in results:
            # position 0 in the group is its top: each later variation goes above the one before
            _add_result_layer(image, layer, group, 0, box, arr, name, write_mask, added)
        return group

    return _in_one_undo_group(image, layer, work)
