"""A generated world in the original file formats, for tests, demos and debugging.

`generate_world(out_dir, SynthConfig(...))` writes, in the layouts of the LXMERT release
(see docs/data.md for every field)::

    OUT/features/{train,val,test}_obj36.tsv   bottom-up-attention TSV, 36 boxes per image
    OUT/lxmert/mscoco_train.json               pre-training data (train images)
    OUT/lxmert/mscoco_minival.json             pre-training validation (val images)
    OUT/lxmert/all_ans.json                    pre-training answer table [{ans, dsets}]
    OUT/vqa/{train,minival,test}.json          + trainval_{ans2label,label2ans}.json
    OUT/gqa/{train,valid,testdev}.json         + trainval_{ans2label,label2ans}.json
    OUT/nlvr2/{train,valid,test}.json
    OUT/retrieval/dataset_world.json           the captions as a Karpathy split (`lxmert.data.karpathy`)
    OUT/images/<img_id>.png                    only with `pictures="test"|"all"`: rendered scenes
    OUT/vocab.txt                              BERT uncased vocab (every word of the world is in it)

so that every loader of the package runs exactly as it would on the real data.

The world: each image is a scene of 3-6 objects, each with a shape, a colour, a size, a
material and a position. A simulated detector returns 36 boxes per image - the objects,
parts of them, jittered duplicates and background regions - with VG-style object and
attribute ids and confidences. Region features are a FIXED random function of the box's
true label and attributes plus noise: the function depends only on `feature_seed`, never on
the split or on `seed`, so what a model learns about features carries over between splits
and between worlds.

Language describes the scenes (captions, region descriptions, VQA- and GQA-style
questions, NLVR2-style statements about image pairs). Answers are balanced per question
template (colour answers uniform over colours, yes/no questions half yes, counts spread
over the counts present), so a text-only model cannot do much better than chance: both
language and vision are needed. `text_prior_baseline` measures exactly that.

Splits use disjoint images; only train and val images appear in the pre-training json, so
no fine-tuning test question (VQA test, GQA testdev, NLVR2 test) is ever pre-trained on.

The modules, each importing only those above it:

- `scenes`: objects, scenes and their geometry (`generate_scene`, `relation`);
- `detector`: the simulated detector and the feature function;
- `language`: captions, region descriptions, questions, answers and annotators;
- `nlvr2`: statements about image pairs;
- `config`: `SynthConfig`;
- `layout`: file names, image ids, and an image id back to its scene (`world_scene`);
- `render`: scenes drawn to pictures (`render_scene`, `render_world_image`);
- `writer`: `generate_world`;
- `baseline`: `text_prior_baseline`;
- `more_tasks`: A-OKVQA / VizWiz / classification files derived from a world.
"""

from lxmert.data.synth.baseline import text_prior_baseline
from lxmert.data.synth.more_tasks import derive_more_tasks
from lxmert.data.synth.config import PICTURE_CHOICES, SynthConfig
from lxmert.data.synth.detector import (BACKGROUNDS, DETECTOR_ATTRIBUTE_IDS, DETECTOR_OBJECT_IDS, FEATURE_CODES,
                                        PARTS, FeatureFunction, detector_record)
from lxmert.data.synth.language import (COUNT_ANSWERS, GQA_ANSWERS, GQA_TEMPLATES, NUMBER_WORDS, SIDES,
                                        VQA_ANSWERS, VQA_TEMPLATES, YES_NO, AnswerBalancer, annotate,
                                        answer_space, vqa_soft_label)
from lxmert.data.synth.layout import image_id, parse_image_id, read_world_config, scene_for_id, world_scene
from lxmert.data.synth.nlvr2 import NLVR2_KINDS, nlvr2_statement
from lxmert.data.synth.render import COLOUR_RGB, render_scene, render_world_image
from lxmert.data.synth.scenes import COLOURS, MATERIALS, SHAPES, SIZES, Scene, SceneObject, generate_scene
from lxmert.data.synth.writer import PICTURE_SPLITS, WorldSummary, generate_world

__all__ = [
    "SynthConfig",
    "WorldSummary",
    "SceneObject",
    "Scene",
    "generate_world",
    "generate_scene",
    "text_prior_baseline",
    "SHAPES",
    "COLOURS",
    "MATERIALS",
    "SIZES",
    "PARTS",
    "BACKGROUNDS",
    "DETECTOR_OBJECT_IDS",
    "DETECTOR_ATTRIBUTE_IDS",
    "FEATURE_CODES",
    "FeatureFunction",
    "detector_record",
    "NLVR2_KINDS",
    "nlvr2_statement",
    "VQA_ANSWERS",
    "GQA_ANSWERS",
    "VQA_TEMPLATES",
    "GQA_TEMPLATES",
    "COUNT_ANSWERS",
    "YES_NO",
    "SIDES",
    "NUMBER_WORDS",
    "AnswerBalancer",
    "annotate",
    "answer_space",
    "vqa_soft_label",
    "PICTURE_CHOICES",
    "PICTURE_SPLITS",
    "COLOUR_RGB",
    "render_scene",
    "render_world_image",
    "image_id",
    "parse_image_id",
    "read_world_config",
    "scene_for_id",
    "world_scene",
    "derive_more_tasks",
]
