# The segmentation pipeline's first half: the hybrid subset, training with and without adaptation,
# pseudo-labels, and evaluation of every model on the target test set.


rule sample:
    input:
        sequences=target_sequences("train"),
    output:
        hybrid=f"{RESULTS}/sample/hybrid.txt",
    log:
        f"{RESULTS}/logs/sample.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("sample")["threads"]
    resources:
        mem_mb=resources_of("sample")["mem_mb"],
        runtime=resources_of("sample")["runtime"],
        gpu=resources_of("sample")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        sample=config["sample"],
    script:
        "../stages/sample.py"


rule train_uda:
    input:
        unpack(train_inputs(adapt=True)),
    output:
        model=f"{RESULTS}/train/uda/seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/uda/seed{{seed}}/metrics.csv",
        config=f"{RESULTS}/train/uda/seed{{seed}}/config.yaml",
    log:
        f"{RESULTS}/logs/train_uda/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_uda/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("train")["threads"]
    resources:
        mem_mb=resources_of("train")["mem_mb"],
        runtime=resources_of("train")["runtime"],
        gpu=resources_of("train")["gpu"],
    params:
        adapt=True,
        labelled_target=False,
        train=train_params,
        uda=config["uda"],
        model=config["model"],
        cityscapes=config_subset("cityscapes", "classes", "grayscale"),
        num_classes=config["dsec"]["num_classes"],
        dsec=DSEC_PARAMS,
    script:
        "../stages/train.py"


rule train_source_only:
    input:
        unpack(train_inputs(adapt=False)),
    output:
        model=f"{RESULTS}/train/source_only/seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/source_only/seed{{seed}}/metrics.csv",
        config=f"{RESULTS}/train/source_only/seed{{seed}}/config.yaml",
    log:
        f"{RESULTS}/logs/train_source_only/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_source_only/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("train")["threads"]
    resources:
        mem_mb=resources_of("train")["mem_mb"],
        runtime=resources_of("train")["runtime"],
        gpu=resources_of("train")["gpu"],
    params:
        adapt=False,
        labelled_target=False,
        train=train_params,
        uda=config_subset("uda", "feature_distance", "rcs"),
        model=config["model"],
        cityscapes=config_subset("cityscapes", "classes", "grayscale"),
        num_classes=config["dsec"]["num_classes"],
    script:
        "../stages/train.py"


rule pseudo_label:
    input:
        model=f"{RESULTS}/train/uda/seed{config['train']['seeds'][0]}/model.pt",
        sequences=target_sequences("train"),
        reconstructions=reconstruction_folders("train"),
    output:
        folders=[
            directory(f"{RESULTS}/pseudo_label/train/{seq}")
            for seq in config["dsec"]["sequences"]["train"]
        ],
        quality=f"{RESULTS}/pseudo_label/quality.json",
    log:
        f"{RESULTS}/logs/pseudo_label.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_label.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("pseudo_label")["threads"]
    resources:
        mem_mb=resources_of("pseudo_label")["mem_mb"],
        runtime=resources_of("pseudo_label")["runtime"],
        gpu=resources_of("pseudo_label")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        pseudo_label=config["pseudo_label"],
        seed=config["train"]["seeds"][0],
    script:
        "../stages/pseudo_label.py"


rule evaluate:
    input:
        model=f"{RESULTS}/train/{{model}}/seed{{seed}}/model.pt",
        sequences=target_sequences("test"),
        reconstructions=reconstruction_folders("test"),
    output:
        metrics=f"{RESULTS}/evaluate/{{model}}/seed{{seed}}/metrics.json",
        per_class=f"{RESULTS}/evaluate/{{model}}/seed{{seed}}/per_class.csv",
        confusion=f"{RESULTS}/evaluate/{{model}}/seed{{seed}}/confusion.npy",
        confusion_picture=report(
            f"{RESULTS}/evaluate/{{model}}/seed{{seed}}/confusion.png",
            caption="../report/confusion.rst",
            category="Evaluation",
            subcategory="Confusion matrices",
            labels={"model": "{model}", "seed": "{seed}"},
        ),
        panels=report(
            f"{RESULTS}/evaluate/{{model}}/seed{{seed}}/panels.png",
            caption="../report/panels.rst",
            category="Evaluation",
            subcategory="Test predictions",
            labels={"model": "{model}", "seed": "{seed}"},
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
        gpu=resources_of("evaluate")["gpu"],
    params:
        dsec=DSEC_PARAMS,
        evaluate=config["evaluate"],
    script:
        "../stages/evaluate.py"


rule evaluate_summary:
    input:
        unpack(summary_inputs),
    output:
        summary=f"{RESULTS}/evaluate/summary.csv",
        means=f"{RESULTS}/evaluate/summary_means.csv",
    log:
        f"{RESULTS}/logs/evaluate_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_summary.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: 1
    resources:
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
    script:
        "../stages/evaluate_summary.py"
