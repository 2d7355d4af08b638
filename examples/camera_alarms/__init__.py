"""Security-camera alarm pipeline: images -> person detectors -> labels -> human review.

A reference app for persistio. Each image's bytes go to amorphous storage and a work item with
its reference to a transitory stream; detectors (OpenCV HOG + SVM, Haar cascades, optionally AWS
Rekognition) label it; likely persons wait in a volatile review queue; reviewers' verdicts are
ACID; a report measures each detector against the verdicts. See README.md.
"""
