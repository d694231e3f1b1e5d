# pipeline: cmda. CMDA (image + events, night) and its baselines on DSEC Night-Semantic, and the L2 study:
# train_cmda per (model, seed), evaluate_cmda on the test split, one summary table.


rule train_cmda:
    input:
        unpack(train_cmda_inputs),
    output:
        model=f"{RESULTS}/cmda/train/{{cmda_model}}/seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/cmda/train/{{cmda_model}}/seed{{seed}}/metrics.csv",
        config=f"{RESULTS}/cmda/train/{{cmda_model}}/seed{{seed}}/config.yaml",
    log:
        f"{RESULTS}/logs/train_cmda/{{cmda_model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_cmda/{{cmda_model}}/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("train_cmda")["threads"]
    resources:
        mem_mb=resources_of("train_cmda")["mem_mb"],
        runtime=resources_of("train_cmda")["runtime"],
        gpu=resources_of("train_cmda")["gpu"],
    params:
        variant=cmda_variant,
        train=train_params,
        uda=config_subset(
            "uda",
            "ema_alpha",
            "start_iter",
            "pseudo_threshold",
            "pseudo_weighting",
            "pseudo_ignore_top",
            "pseudo_ignore_bottom",
            "strong_aug",
            "rcs",
        ),
        cmda=CMDA_PARAMS,
        model=config["model"],
        dsec_night=config["dsec_night"],
        num_classes=19,
    script:
        "../stages/train_cmda.py"


rule evaluate_cmda:
    input:
        model=f"{RESULTS}/cmda/train/{{cmda_model}}/seed{{seed}}/model.pt",
        sequences=night_sequences(),
    output:
        metrics=f"{RESULTS}/cmda/evaluate/{{cmda_model}}/seed{{seed}}/metrics.json",
        per_class=f"{RESULTS}/cmda/evaluate/{{cmda_model}}/seed{{seed}}/per_class.csv",
        confusion=f"{RESULTS}/cmda/evaluate/{{cmda_model}}/seed{{seed}}/confusion.npy",
        panels=report(
            f"{RESULTS}/cmda/evaluate/{{cmda_model}}/seed{{seed}}/panels.png",
            caption="../report/panels.rst",
            category="CMDA",
            subcategory="Test predictions",
            labels={"model": "{cmda_model}", "seed": "{seed}"},
        ),
    log:
        f"{RESULTS}/logs/evaluate_cmda/{{cmda_model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_cmda/{{cmda_model}}/seed{{seed}}.tsv"
    conda:
        "../envs/evseg.yaml"
    threads: resources_of("evaluate_cmda")["threads"]
    resources:
        mem_mb=resources_of("evaluate_cmda")["mem_mb"],
        runtime=resources_of("evaluate_cmda")["runtime"],
        gpu=resources_of("evaluate_cmda")["gpu"],
    params:
        dsec_night=config["dsec_night"],
        evaluate=config_subset("evaluate", "panels", "device"),
    script:
        "../stages/evaluate_cmda.py"


rule cmda_summary:
    input:
        metrics=cmda_evaluate_outputs(),
    output:
        summary=f"{RESULTS}/cmda/summary.csv",
        means=f"{RESULTS}/cmda/summary_means.csv",
    log:
        f"{RESULTS}/logs/cmda_summary.log",
    conda:
        "../envs/evseg.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../stages/cmda_summary.py"


rule cmda_l2_study:
    input:
        unpack(cmda_l2_study_inputs),
    output:
        table=f"{RESULTS}/cmda/l2_study.csv",
        terms=report(
            f"{RESULTS}/cmda/l2_terms.png",
            caption="../report/l2_terms.rst",
            category="CMDA",
        ),
    log:
        f"{RESULTS}/logs/cmda_l2_study.log",
    conda:
        "../envs/evseg.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../stages/cmda_l2_study.py"
