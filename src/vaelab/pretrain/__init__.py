"""Greedy layer-wise pretraining of stacked autoencoders and its fine-tuning (vaelab pretrain); see greedy.py."""
from .greedy import (PretrainConfig, PretrainRunConfig, StackedClassifier, build_network, layer_inputs, greedy_pretrain, finetune, accuracy, PretrainResult, fill_from_data, pretrain_and_finetune, write_run, run_pretraining, load_stacked)  # noqa: F401

__all__ = ['PretrainConfig', 'PretrainRunConfig', 'StackedClassifier', 'build_network', 'layer_inputs', 'greedy_pretrain', 'finetune', 'accuracy', 'PretrainResult', 'fill_from_data', 'pretrain_and_finetune', 'write_run', 'run_pretraining', 'load_stacked']
