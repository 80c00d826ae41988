import pgvector.django
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0007_reference_from_reviews'),
    ]

    operations = [
        # pgvector: shipped with the embedded server; a server of one's own needs the extension
        # installed (CREATE EXTENSION needs a superuser unless it is already there).
        pgvector.django.VectorExtension(),
        migrations.AddField(
            model_name='prediction',
            name='features',
            field=pgvector.django.VectorField(blank=True, help_text="the model's pooled features", null=True),
        ),
        migrations.AddField(
            model_name='prediction',
            name='ood_distance',
            field=models.FloatField(blank=True, help_text="Mahalanobis distance of the features to the reference set's nearest label", null=True),
        ),
        migrations.AddField(
            model_name='prediction',
            name='ood_percentile',
            field=models.FloatField(blank=True, help_text='share of held-out reference images nearer than this case, 0-100', null=True),
        ),
        migrations.AddField(
            model_name='referenceimage',
            name='features',
            field=pgvector.django.VectorField(blank=True, help_text="the model version's features of this image", null=True),
        ),
        migrations.AddField(
            model_name='referenceimage',
            name='fold',
            field=models.PositiveSmallIntegerField(blank=True, help_text="held out of the detector's fit with this fold, to calibrate its threshold", null=True),
        ),
        migrations.AddField(
            model_name='referenceset',
            name='detector_threshold',
            field=models.FloatField(blank=True, help_text='farther than this: out of domain (None: not fitted)', null=True),
        ),
        migrations.AddField(
            model_name='referenceset',
            name='detector_calibration',
            field=models.JSONField(blank=True, default=list, help_text='distances of the held-out images, ascending'),
        ),
        migrations.AddField(
            model_name='referenceset',
            name='detector_sha256',
            field=models.CharField(blank=True, help_text='the artifact whose features were fitted', max_length=64),
        ),
        migrations.AddField(
            model_name='referenceset',
            name='detector_fitted_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='referenceset',
            name='detector_error',
            field=models.TextField(blank=True, help_text='why no detector could be fitted'),
        ),
    ]
