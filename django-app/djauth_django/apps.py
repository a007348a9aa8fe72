from django.apps import AppConfig, apps


class DjauthConfig(AppConfig):
    name = "djauth_django"
    verbose_name = "djauth session index"
    default = True

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.db.models.signals import post_delete, post_save, pre_save

        from . import signals

        user_logged_in.connect(signals.record_login, dispatch_uid="djauth_django.record_login")
        user_logged_out.connect(signals.forget_session, dispatch_uid="djauth_django.forget_session")
        # The user model and its proxies / subclasses (they send signals as themselves).
        # Per model, not sender=None: a global post_delete receiver would turn off Django's
        # fast deletes for every model.
        user_model = get_user_model()
        for model in apps.get_models():
            if issubclass(model, user_model):
                uid = f"djauth_django.{model._meta.label_lower}"
                pre_save.connect(signals.remember_state, sender=model, dispatch_uid=uid)
                post_save.connect(signals.end_sessions_if_changed, sender=model, dispatch_uid=uid)
                post_delete.connect(signals.end_sessions_of_deleted, sender=model, dispatch_uid=uid)
