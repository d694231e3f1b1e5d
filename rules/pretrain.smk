# ECDDP: self-supervised pre-training of the event backbone on unlabelled event windows (pretrain_events), and
# supervised training on the target's labelled drives from scratch or from that backbone (train_supervised),
# the protocol by which pre-training is judged. Any segmentation rule can start from the pre-trained
# backbone: model.pretrained set to the checkpoint's path makes Snakemake build it first.


rule pretrain_events:
    input:
        recordings=pretrain_recordings(),
    output:
        checkpoint=PRETRAINED_EVENTS,
        metrics=f"{RESULTS}/pretrain_events/metrics.csv",
        config=f"{RESULTS}/pretrain_events/config.yaml",
        similarity=report(
            f"{RESULTS}/pretrain_events/similarity.png",
            caption="../report/similarity.rst",
            category="Pre-training",
        ),
    log:
        f"{RESULTS}/logs/pretrain_events.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_events.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("pretrain_events")["threads"]
    resources:
        mem_mb=resources_of("pretrain_events")["mem_mb"],
        runtime=resources_of("pretrain_events")["runtime"],
        gpu=resources_of("pretrain_events")["gpu"],
    params:
        pretrain=config["pretrain"],
        model=config_subset("model", "backbone", "drop_path_rate"),
        input=config["train"]["input"],
        grayscale_source=config["cityscapes"]["grayscale"],
        dsec=config_subset("dsec", "sensor_size", "label_height", "ess"),
    script:
        "../stages/pretrain_events.py"


rule train_supervised:
    input:
        unpack(supervised_inputs),
    output:
        model=f"{RESULTS}/train/{{supervised}}/seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/{{supervised}}/seed{{seed}}/metrics.csv",
        config=f"{RESULTS}/train/{{supervised}}/seed{{seed}}/config.yaml",
    log:
        f"{RESULTS}/logs/train_supervised/{{supervised}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_supervised/{{supervised}}/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("train")["threads"]
    resources:
        mem_mb=resources_of("train")["mem_mb"],
        runtime=resources_of("train")["runtime"],
        gpu=resources_of("train")["gpu"],
    params:
        adapt=False,
        labelled_target=True,
        train=train_params,
        uda=config_subset("uda", "feature_distance", "rcs"),
        model=config["model"],
        cityscapes=config_subset("cityscapes", "classes", "grayscale"),
        num_classes=config["dsec"]["num_classes"],
        dsec=DSEC_PARAMS,
    script:
        "../stages/train.py"
