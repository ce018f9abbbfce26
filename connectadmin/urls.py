from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from connectadmin import alerts_views, settings_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("health", views.health_page, name="health"),
    path("alerts", alerts_views.alert_list, name="alerts"),
    path("alerts/subscription", alerts_views.subscription, name="alerts_subscription"),
    path("favicon.ico", views.favicon, name="favicon"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("", include("signals_app.urls")),
    path("", include("exports_app.urls")),
    path("settings/", include("connectadmin.settings_urls")),
    path("invite/<uidb64>/<token>/", settings_views.invite_accept, name="invite_accept"),
    path("admin/", admin.site.urls),
]
