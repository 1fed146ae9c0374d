"""Script-mode entry for AWS's AutoGluon training image (SageMaker's deep learning container).

That image runs `python train.py --<hyperparameter> <value> ...` from the source tarball named by the
`sagemaker_submit_directory` hyperparameter (`make training-source` builds it: this file, training_job/ and
the requirements the image lacks). The job reads the same hyperparameters from
/opt/ml/input/config/hyperparameters.json, so the command-line copies are ignored.
"""

from training_job.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train"]))
