# Event-to-image reconstruction at the protocol's label times (high-pass filter, E2VID or FireNet;
# E2VID optionally trained first on simulated drives, train_reconstruction):
# one job per sequence, or with reconstruct.batch_sequences one job per split whose sequences run through
# the network as one batch.


if config["reconstruct"]["train"]["enabled"]:

    rule train_reconstruction:
        input:
            drives=simulated_drives(),
        output:
            checkpoint=TRAINED_RECONSTRUCTION,
            losses=f"{RESULTS}/train_reconstruction/losses.csv",
        log:
            f"{RESULTS}/logs/train_reconstruction.log",
        benchmark:
            f"{RESULTS}/benchmarks/train_reconstruction.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("train_reconstruction")["threads"]
        resources:
            mem_mb=resources_of("train_reconstruction")["mem_mb"],
            runtime=resources_of("train_reconstruction")["runtime"],
            gpu=resources_of("train_reconstruction")["gpu"],
        params:
            train=config["reconstruct"]["train"],
            events_per_pixel=config["reconstruct"]["events_per_pixel"],
            sensor_size=config["dsec"]["sensor_size"],
        script:
            "../stages/train_reconstruction.py"


if not config["reconstruct"]["batch_sequences"]:

    rule reconstruct:
        input:
            unpack(reconstruct_inputs),
        output:
            frames=directory(f"{RESULTS}/reconstruct/{{split}}/{{seq}}"),
            pictures=f"{RESULTS}/reconstruct/{{split}}/{{seq}}.png",
            stats=f"{RESULTS}/reconstruct/{{split}}/{{seq}}.json",
        log:
            f"{RESULTS}/logs/reconstruct/{{split}}/{{seq}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/reconstruct/{{split}}/{{seq}}.tsv"
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("reconstruct")["threads"]
        resources:
            mem_mb=resources_of("reconstruct")["mem_mb"],
            runtime=resources_of("reconstruct")["runtime"],
            gpu=resources_of("reconstruct")["gpu"],
        params:
            dsec=DSEC_PARAMS,
            reconstruct=config["reconstruct"],
        script:
            "../stages/reconstruct.py"

else:

    for split in reconstructed_splits():

        rule:
            name:
                f"reconstruct_{split}"
            input:
                unpack(reconstruct_inputs_of_split(split)),
            output:
                frames=[
                    directory(f"{RESULTS}/reconstruct/{split}/{seq}")
                    for seq in sequences_of(split)
                ],
                pictures=[f"{RESULTS}/reconstruct/{split}/{seq}.png" for seq in sequences_of(split)],
                stats=[f"{RESULTS}/reconstruct/{split}/{seq}.json" for seq in sequences_of(split)],
            log:
                f"{RESULTS}/logs/reconstruct/{split}.log",
            benchmark:
                f"{RESULTS}/benchmarks/reconstruct/{split}.tsv"
            conda:
                "../envs/evseg.yaml"
            threads: resources_of("reconstruct")["threads"]
            resources:
                mem_mb=resources_of("reconstruct")["mem_mb"],
                runtime=resources_of("reconstruct")["runtime"],
                gpu=resources_of("reconstruct")["gpu"],
            params:
                dsec=DSEC_PARAMS,
                reconstruct=config["reconstruct"],
            script:
                "../stages/reconstruct.py"
