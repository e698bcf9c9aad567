"""The only code that talks to Azure: Entra tokens, Graph, Key Vault and ARM (App Service)."""
