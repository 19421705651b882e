"""Request building: what one edit reads from the image, as a ``bridge.requests.EditRequest``.

The crop is the selection's bounding box grown by ``margin`` (settings, default 25 %) of its width/height per
side, clipped to the active layer. Without a selection the whole layer is used (label swap, projection) or
the reference's feature stays where the reference layer puts it (feature blend).

Feature blend: the reference layer's feature region is its layer mask if it has one, else its alpha, else the
whole layer. The selection marks where the feature goes. The shift sent to the engine is
    shift = centre(bounding box of the selection) - centre(bounding box of the reference feature region)
in image pixels, rounded: reference content at image point p lands at p + shift (the paper's operator U).

Multi-label swap: every channel of the image named ``label: <class>`` adds that class with the channel
(full resolution, image coordinates, soft values kept) as its map.
"""
import nc_image as gimage
import nc_pixels as px
from nc_engine import UserError, bprotocol, brequests


def class_param(text):
    """A class given as text: an int when it is a number (a class id), else the name as typed."""
    text = (text or "").strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def class_name(value, fallback=""):
    if isinstance(value, dict):
        return str(value.get("name") or value.get("id") or fallback)
    if value is None or value == "":
        return fallback
    return str(value)


def scope_layers(scope):
    """The wire ``layers`` value of the scope chosen in the dialog (all / global / local)."""
    try:
        return brequests.scope_layers(scope)
    except ValueError as exc:
        raise UserError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None


def _has(config, prop):
    return config.find_property(prop) is not None


def layer_strengths(config):
    """The per-layer strengths typed in ``layer-strengths`` (None = all 1); a UserError (one sentence) for a text
    that is not a list of numbers 0..1, raised before anything is read from or written to the image."""
    if not _has(config, "layer-strengths"):
        return None
    try:
        return brequests.parse_layer_strengths(config.get_property("layer-strengths"))
    except ValueError as exc:
        raise UserError(f"Neural Collage: {exc}. The image was left as it was.") from None


def edit_options(config):
    """{mode, scale} of an edit (issue 14): the engine's defaults where the procedure has no such argument."""
    out = {}
    if _has(config, "mode"):
        out["mode"] = config.get_property("mode") or None
    if _has(config, "scale"):
        out["scale"] = float(config.get_property("scale"))
    return out


def variation_strengths(config):
    """The strengths of the variations to insert: ``[strength]`` for one result, else the strength strip."""
    strength = float(config.get_property("strength"))
    n = int(config.get_property("variations")) if _has(config, "variations") else 1
    try:
        return brequests.strength_strip(strength, n)
    except ValueError as exc:
        raise UserError(f"Neural Collage: {exc}.") from None


def with_strength(request, strength):
    """A copy of an edit request whose swap (and its labels) or blend goes ``strength`` far."""
    import copy

    req = copy.copy(request)
    if req.swap is not None:
        req.swap = copy.copy(req.swap)
        req.swap.strength = strength
        req.swap.labels = [brequests.Label(lb.cls, strength, lb.mask_name, lb.mask) for lb in req.swap.labels]
    if req.blend is not None:
        req.blend = copy.copy(req.blend)
        req.blend.strength = strength
    return req


class Job:
    """Everything one edit reads from the image before the engine is called."""

    def __init__(self, image, layer, settings, rgb8=False):
        self.image = image
        self.layer = layer
        self.settings = settings
        # rgb8: the live preview reads the crop as 8-bit RGB, which its preview area draws as it comes back
        self.fmt = px.PixelFormat(False, False, "u8") if rgb8 else gimage.pixel_format(image, layer)
        self.lbox = gimage.layer_box(layer)
        self.notes = []
        self.box = None
        self.write_mask = None
        self.image_bytes = b""

    def set_box(self, region):
        box = px.crop_box(region, self.lbox, self.settings["margin"])
        if box is None:
            raise UserError(f"The selection does not overlap the layer '{self.layer.get_name()}'. Select a "
                            "region on it, or choose another layer.")
        self.box = box

    def array(self, dtype, channels, data):
        """A bridge Array over the crop box (``channels`` None for a mask)."""
        shape = (self.box[3], self.box[2]) if channels is None else (self.box[3], self.box[2], channels)
        return bprotocol.Array(dtype, shape, data)

    def image_array(self, drawable=None):
        data = gimage.read_buffer(drawable or self.layer, self.box, self.fmt.babl)
        if drawable is None:
            self.image_bytes = data
        return self.array(self.fmt.dtype, self.fmt.channels, data)

    def selection_mask(self, region_is_selection):
        """The selection over the crop, or (no selection) a full mask."""
        if region_is_selection:
            return gimage.read_selection(self.image, self.box)
        return px.full_mask(self.box[2], self.box[3])

    def mask_array(self, data):
        if not data.strip(b"\x00"):
            raise UserError(f"The selection is empty over the layer '{self.layer.get_name()}'.")
        self.write_mask = data
        return self.array("uint8", None, data)

    def cache_key(self):
        x, y, w, h = self.box
        model = self.settings.get("model")
        return (f"nc:{self.image.get_id()}:{self.layer.get_id()}:{x},{y},{w}x{h}:{model or 'default'}:"
                f"{self.fmt.key}:{px.crop_digest(self.image_bytes)}")

    def request(self, config, poisson, **kw):
        """The EditRequest with what every edit sends: model, steps, cache key."""
        steps = int(config.get_property("steps") or 0) if config.find_property("steps") is not None else 0
        steps = steps or int(self.settings.get("steps") or 0)
        return brequests.EditRequest(
            model=self.settings.get("model") or None, steps=steps if steps > 0 else None, poisson=poisson,
            cache_key=self.cache_key(), **edit_options(config), **kw)


def _whole_layer_if_unselected(job, note):
    region = gimage.selection_region(job.image)
    if region is None:
        job.notes.append(note)
        job.set_box(job.lbox)
    else:
        job.set_box(region)
    return region is not None


def build_swap(job, config):
    """Label swap: the target class (and one label per 'label: <class>' channel) inside the selection."""
    strengths = layer_strengths(config)
    selected = _whole_layer_if_unselected(job, "No selection: the whole layer was used.")
    image = job.image_array()
    mask = job.mask_array(job.selection_mask(selected))
    strength = float(config.get_property("strength"))
    target = class_param(config.get_property("target-class"))
    labels = []
    for i, (cls, channel) in enumerate(gimage.label_channels(job.image)):
        data = gimage.read_channel(channel, job.box)
        if not data.strip(b"\x00"):
            job.notes.append(f"Channel 'label: {cls}' is empty in the edited region and was skipped.")
            continue
        labels.append(brequests.Label(class_param(cls), strength, f"label{i}", job.array("uint8", None, data)))
        job.write_mask = px.max_masks(job.write_mask, data)
    if target is None:
        if not labels:
            raise UserError("Choose a target class (a name or an id from the engine's class list), or add "
                            "channels named 'label: <class>'.")
        target = labels[0].cls
    swap = brequests.SwapParams(target, strength, scope_layers(config.get_property("scope")), labels,
                                layer_strengths=strengths)
    return job.request(config, bool(config.get_property("poisson")), image=image, mask=mask, swap=swap,
                       source_class=class_param(config.get_property("source-class")))


def build_blend(job, config):
    """Feature blend: the reference layer's feature moved onto the selection (see the module docstring)."""
    strengths = layer_strengths(config)
    image, layer = job.image, job.layer
    ref = config.get_property("reference")
    if ref is None:
        raise UserError("Choose the reference layer whose feature should be blended in.")
    if ref.get_id() == layer.get_id():
        raise UserError(f"The reference layer must differ from the active layer '{layer.get_name()}'.")
    if ref.get_image().get_id() != image.get_id():
        raise UserError("The reference layer must belong to the same image.")
    if ref.is_group_layer():
        raise UserError(f"The reference '{ref.get_name()}' is a layer group; choose a normal layer.")
    fmask, how = gimage.feature_region(ref)
    rbox = gimage.layer_box(ref)
    if fmask is not None:
        inner = px.mask_bbox(fmask, rbox[2], rbox[3])
        if inner is None:
            raise UserError(f"The reference layer '{ref.get_name()}' marks no feature: {how} is empty.")
        feat = (rbox[0] + inner[0], rbox[1] + inner[1], inner[2], inner[3])
    else:
        feat = rbox
    region = gimage.selection_region(image)
    if region is None:
        target_region = feat
        shift = (0, 0)
        job.notes.append("No selection: the feature stays where the reference layer puts it.")
    else:
        target_region = region
        (sx, sy), (fx, fy) = px.centre(region), px.centre(feat)
        shift = (round(sx - fx), round(sy - fy))
    margin = job.settings["margin"]
    want = px.union(px.grow(target_region, margin), px.grow(feat, margin))
    box = px.intersect(want, job.lbox)
    if box is None or px.intersect(target_region, job.lbox) is None:
        raise UserError(f"The target region does not overlap the layer '{layer.get_name()}'.")
    job.box = box
    pixels = job.image_array()
    ref_mask = gimage.feature_mask_crop(ref, box)
    mask = job.mask_array(ref_mask if region is None else gimage.read_selection(image, box))
    blend = brequests.BlendParams(float(config.get_property("strength")),
                                  scope_layers(config.get_property("scope")), (shift[0], shift[1]),
                                  layer_strengths=strengths)
    job.notes.append(f"Reference feature region: {how} of '{ref.get_name()}' ({feat[2]}x{feat[3]} at "
                     f"{feat[0]},{feat[1]}); shift {shift[0]:+d},{shift[1]:+d} px.")
    return job.request(config, bool(config.get_property("poisson")), image=pixels, mask=mask, blend=blend,
                       reference=job.image_array(ref), reference_mask=job.array("uint8", None, ref_mask))


def build_project(job, config):
    """Projection: the selection (or the whole layer) onto the generator's manifold; ``recon`` comes back."""
    selected = _whole_layer_if_unselected(job, "No selection: the whole layer was projected.")
    image = job.image_array()
    mask = job.mask_array(job.selection_mask(selected))
    return job.request(config, False, image=image, mask=mask, return_recon=True)
